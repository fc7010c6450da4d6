"""Trainings sharing a GPU: `hpo launch --mps` and `--workers-per-gpu auto`.

No GPU here: the NVIDIA programs launch calls (`nvidia-cuda-mps-control`, `nvidia-smi`) are stand-ins
this test puts on PATH, outside the code under test, that record their calls; the launches are the
real `hpo launch` processes with their real worker processes (the learning-curve trainer, which
trains nothing, so a worker planned on "GPU 0" runs on this CPU machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from hpo.errors import HpoError
from hpo.search.launch import fit_workers_per_gpu, parse_free_mib, parse_workers_per_gpu, query_free_gib

from conftest import hpo_cmd, sigint_as_in_a_terminal, tiny_spec_dict, wait_for


def curve_study(tmp_path: Path, toy_data: Path, **kwargs: object) -> Path:
    spec = tiny_spec_dict(toy_data, **kwargs)
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path



FAKE_MPS = r"""#!/usr/bin/env bash
# Stand-in for nvidia-cuda-mps-control: records every call; a "daemon" is a control file in the pipe folder.
pipe="${CUDA_MPS_PIPE_DIRECTORY:-/tmp/nvidia-mps}"
if [ "${1:-}" = "-d" ]; then
  echo "start log=${CUDA_MPS_LOG_DIRECTORY:-}" >> "$FAKE_MPS_LOG"
  mkdir -p "$pipe" && : > "$pipe/control"
  exit "${FAKE_MPS_START_STATUS:-0}"
fi
read -r cmd
case "$cmd" in
  get_server_list) echo "query" >> "$FAKE_MPS_LOG"; [ -e "$pipe/control" ] ;;
  quit)
    alive=$(pgrep -fc -- "-m hpo worker --study $FAKE_MPS_STUDY" || true)
    echo "quit workers_alive=$alive" >> "$FAKE_MPS_LOG"; rm -f "$pipe/control" ;;
  *) echo "unknown $cmd" >> "$FAKE_MPS_LOG"; exit 1 ;;
esac
"""

FAKE_SMI = r"""#!/usr/bin/env bash
# Stand-in for nvidia-smi --query-gpu=memory.free ...: free MiB of the GPU after -i, from FAKE_SMI_FREE="0:81000,1:30000".
echo "$*" >> "$FAKE_SMI_LOG"
gpu=""; while [ $# -gt 0 ]; do [ "$1" = "-i" ] && gpu="$2"; shift; done
for pair in ${FAKE_SMI_FREE//,/ }; do [ "${pair%%:*}" = "$gpu" ] && { echo "${pair#*:}"; exit 0; }; done
echo "No devices were found"; exit 6
"""


def _fake_bin(tmp_path: Path, **scripts: str) -> Path:
    folder = tmp_path / "fakebin"
    folder.mkdir(exist_ok=True)
    for name, text in scripts.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    return folder


def _env(tmp_path: Path, study: str, fake: Path | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "mps-pipe"), "FAKE_MPS_LOG": str(tmp_path / "mps.log"),
           "FAKE_MPS_STUDY": study, "FAKE_SMI_LOG": str(tmp_path / "smi.log"), **extra}
    env.pop("CUDA_MPS_LOG_DIRECTORY", None)
    if fake is not None:
        env["PATH"] = f"{fake}:{env['PATH']}"
    return env


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "mps.log"
    return log.read_text().splitlines() if log.exists() else []


def _launch(study_file: Path, tmp_path: Path, env: dict[str, str], *extra: str,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", f"sqlite:///{tmp_path / 'hpo.db'}",
                                  "--gpus", "0", "--trainer", "curve", "--json", *extra),
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)


MPS_CONTROL = "nvidia-cuda-mps-control"


def test_launch_starts_mps_for_packed_workers_and_stops_it(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="mps", trials=4, epochs=2, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    proc = _launch(study_file, tmp_path, _env(tmp_path, "mps", fake), "--workers-per-gpu", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["trials"]["finished"] == 4
    mps = summary["gpu"]["mps"]
    assert mps["used"] and mps["started"] and mps["mode"] == "auto"
    assert any("started the control daemon" in line for line in mps["lines"])
    assert any("stopped the control daemon" in line for line in mps["lines"])
    log_dir = tmp_path / "runs" / "mps" / "logs" / "mps"
    # asked first (no control pipe: no query at all), started once with its logs beside the workers', quit once
    assert _calls(tmp_path) == [f"start log={log_dir}", "quit workers_alive=0"]
    workers = {t.user_attrs["hpo:worker"] for t in optuna.load_study(study_name="mps",
                                                                     storage=f"sqlite:///{tmp_path / 'hpo.db'}").trials}
    assert len(workers) == 2


def test_a_running_daemon_is_used_and_left_running(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="mpsup", trials=2, epochs=1, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    env = _env(tmp_path, "mpsup", fake)
    (tmp_path / "mps-pipe").mkdir()
    (tmp_path / "mps-pipe" / "control").touch()  # somebody else's daemon
    proc = _launch(study_file, tmp_path, env, "--workers-per-gpu", "2", "--mps", "on")
    assert proc.returncode == 0, proc.stderr[-3000:]
    mps = json.loads(proc.stdout)["gpu"]["mps"]
    assert mps["used"] and not mps["started"]
    assert "already running" in mps["lines"][0]
    assert _calls(tmp_path) == ["query"]  # neither started nor quit
    assert (tmp_path / "mps-pipe" / "control").exists()


def test_ctrl_c_stops_the_workers_then_the_daemon_launch_started(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="mpsint", trials=4, epochs=30, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = subprocess.Popen(hpo_cmd("launch", "--study", str(study_file), "--storage", db, "--gpus", "0",
                                    "--workers-per-gpu", "2", "--trainer", "curve", "--curve-epoch-seconds", "1",
                                    "--json"),
                            cwd=tmp_path, env=_env(tmp_path, "mpsint", fake), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=sigint_as_in_a_terminal)
    try:
        storage = optuna.storages.RDBStorage(db)
        wait_for(lambda: _running(storage, "mpsint") >= 2 or proc.poll() is not None, 120, "both workers to train")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert _calls(tmp_path)[0].startswith("start")
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert _calls(tmp_path)[-1] == "quit workers_alive=0"  # after its workers were gone
    assert json.loads(out)["gpu"]["mps"]["started"]
    assert not (tmp_path / "mps-pipe" / "control").exists()


def _running(storage: optuna.storages.RDBStorage, name: str) -> int:
    """Trials RUNNING with a reported epoch: the workers are inside their trials."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    return sum(t.state == optuna.trial.TrialState.RUNNING and bool(t.intermediate_values) for t in study.trials)


def test_mps_off_or_one_worker_per_gpu_touches_nothing(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="nomps", trials=2, epochs=1, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    env = _env(tmp_path, "nomps", fake)
    proc = _launch(study_file, tmp_path, env)  # auto, 1 worker per GPU
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["gpu"]["mps"]["lines"] == ["MPS: off (one worker per GPU: nothing to share)"]
    proc = _launch(study_file, tmp_path, env, "--workers-per-gpu", "2", "--mps", "off", "--trials", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["gpu"]["mps"] == {"mode": "off", "used": False, "started": False,
                                                     "lines": ["MPS: off (--mps off)"]}
    assert _calls(tmp_path) == []


def test_mps_auto_without_the_program_runs_without_it(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="nocontrol", trials=2, epochs=1, sampler="random")
    env = _env(tmp_path, "nocontrol", None, PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    proc = _launch(study_file, tmp_path, env, "--workers-per-gpu", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["gpu"]["mps"]["lines"] == [f"MPS: off ({MPS_CONTROL} not on PATH)"]


@pytest.mark.parametrize("args, message", [
    (["--mps", "sometimes"], "--mps: 'sometimes' is not one of auto, on, off"),
    (["--mps", "on"], f"--mps: {MPS_CONTROL} is not on PATH"),
    (["--mps", "on", "--device", "cpu"], "--mps: CUDA MPS needs GPU workers"),
    (["--workers-per-gpu", "0"], "--workers-per-gpu: '0' is neither a positive number nor 'auto'"),
    (["--workers-per-gpu", "many"], "--workers-per-gpu: 'many' is neither a positive number nor 'auto'"),
    (["--workers-per-gpu", "auto", "--gpu-mem-per-trial", "0"], "--gpu-mem-per-trial: 0.0 must be above 0"),
])
def test_bad_gpu_options_are_one_line_exit_2(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    study_file = curve_study(tmp_path, toy_data, name="bad", trials=2, epochs=1, sampler="random")
    env = _env(tmp_path, "bad", None, PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    proc = _launch(study_file, tmp_path, env, *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "hpo.db").exists() or args[:2] == ["--mps", "on"]  # option faults: before the study


def test_mps_daemon_that_fails_to_start_is_an_error(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="mpsfail", trials=2, epochs=1, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    proc = _launch(study_file, tmp_path, _env(tmp_path, "mpsfail", fake, FAKE_MPS_START_STATUS="3"),
                   "--workers-per-gpu", "2")
    assert proc.returncode == 2
    assert f"--mps: `{MPS_CONTROL} -d` failed with status 3" in proc.stderr
    assert not list((tmp_path / "runs" / "mpsfail" / "logs").glob("worker_*.log"))  # no worker started


# --- --workers-per-gpu auto ---------------------------------------------------------------------------

def test_auto_fits_free_memory_capped_by_the_cores() -> None:
    fits = fit_workers_per_gpu({"0": 79.2, "1": 30.0, "2": 5.0}, mem_per_trial_gib=18, cpus=48, loader_workers=4)
    assert {g: f.workers for g, f in fits.items()} == {"0": 4, "1": 1, "2": 1}  # 5 GiB: still one, never zero
    assert (fits["0"].by_memory, fits["0"].by_cpu) == (4, 4)  # 48 cores / 3 GPUs = 16 each, / 4 loaders
    one = fit_workers_per_gpu({"0": 79.2}, mem_per_trial_gib=2, cpus=16, loader_workers=4)["0"]
    assert (one.by_memory, one.by_cpu, one.workers) == (39, 4, 4)  # the cores cap a small model
    assert fit_workers_per_gpu({"0": 79.2}, mem_per_trial_gib=2, cpus=16, loader_workers=8)["0"].workers == 2
    assert fit_workers_per_gpu({"0": 80.0}, mem_per_trial_gib=2, cpus=2, loader_workers=4)["0"].workers == 1
    assert "79.2 GiB free / 2 GiB per trial = 39" in one.describe(2, 16, 4)


def test_workers_per_gpu_values() -> None:
    assert parse_workers_per_gpu("auto") is None and parse_workers_per_gpu("3") == 3 and parse_workers_per_gpu(2) == 2
    with pytest.raises(HpoError):
        parse_workers_per_gpu("-1")
    assert parse_free_mib("81037\n") == 81037.0
    with pytest.raises(ValueError):
        parse_free_mib("81037\n1000\n")


def test_free_memory_from_nvidia_smi(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path, **{"nvidia-smi": FAKE_SMI})
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "FAKE_SMI_FREE": "0:81920,GPU-abc:1024",
           "FAKE_SMI_LOG": str(tmp_path / "smi.log")}
    assert query_free_gib("0", env=env) == 80.0
    assert query_free_gib("GPU-abc", env=env) == 1.0  # CUDA_VISIBLE_DEVICES may hold UUIDs
    assert (tmp_path / "smi.log").read_text().splitlines()[0] == \
        "--query-gpu=memory.free --format=csv,noheader,nounits -i 0"


def test_free_memory_without_nvidia_smi_asks_torch_in_a_child(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    import torch

    if torch.cuda.is_available():
        assert query_free_gib("0", env=env) > 0
        return
    with pytest.raises(HpoError) as err:  # this machine: no nvidia-smi, no CUDA
        query_free_gib("0", env=env)
    assert "nvidia-smi is not on PATH" in str(err.value) and "torch.cuda.mem_get_info" in str(err.value)


def test_launch_auto_plans_per_gpu_from_nvidia_smi(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="auto", trials=3, epochs=1, sampler="random")
    fake = _fake_bin(tmp_path, **{"nvidia-smi": FAKE_SMI, MPS_CONTROL: FAKE_MPS})
    env = _env(tmp_path, "auto", fake, FAKE_SMI_FREE="0:40960,1:10240")
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", f"sqlite:///{tmp_path / 'hpo.db'}",
                                  "--gpus", "0,1", "--workers-per-gpu", "auto", "--gpu-mem-per-trial", "10",
                                  "--trainer", "curve", "--json"),
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gpu = json.loads(proc.stdout)["gpu"]
    cores = os.cpu_count() or 1
    expected0 = max(1, min(4, max(1, cores // 2) // 4))
    assert gpu["workers_per_gpu"] == {"0": expected0, "1": 1}
    assert gpu["auto"]["free_gib"] == {"0": 40.0, "1": 10.0} and gpu["auto"]["gpu_mem_per_trial_gib"] == 10
    assert gpu["mps"]["used"] == (expected0 > 1)


def test_launch_says_what_it_did_with_mps(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="mpssay", trials=2, epochs=1, sampler="random")
    fake = _fake_bin(tmp_path, **{MPS_CONTROL: FAKE_MPS})
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", f"sqlite:///{tmp_path / 'hpo.db'}",
                                  "--gpus", "0", "--workers-per-gpu", "2", "--trainer", "curve"),
                          capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path, "mpssay", fake), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 worker(s) on GPU" in proc.stderr
    assert f"MPS: started the control daemon ({MPS_CONTROL} -d; pipe {tmp_path / 'mps-pipe'}" in proc.stderr
    assert proc.stderr.index("MPS: started") < proc.stderr.index("MPS: stopped the control daemon this launch started")
