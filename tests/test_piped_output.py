"""Output through a pipe (Slurm and CI logs, `| cat`, `> file`): nothing cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna

from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join

from conftest import hpo_cmd, tiny_spec_dict

NAME = "a_study_name_long_enough_to_squeeze_an_eighty_column_table"


def _piped(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR")}
    return subprocess.run(hpo_cmd(*args), capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_help_through_a_pipe_has_whole_option_names(tmp_path: Path) -> None:
    proc = _piped("launch", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--workers-per-gpu", "--heartbeat-interval", "--allow-spec-change", "--create-only"):
        assert option in proc.stdout, option
    assert "…" not in proc.stdout


def test_status_and_export_through_a_pipe_are_whole(toy_data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    spec = parse_spec(tiny_spec_dict(toy_data, name=NAME))
    create_or_join(open_storage(url), spec, sampler="random")
    study = optuna.load_study(study_name=NAME, storage=url)
    trial = study.ask(spec.distributions())
    study.tell(trial, 0.5312345678)  # the base trial, with its params

    proc = _piped("status", "--storage", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and NAME in proc.stdout and "sampler" in proc.stdout
    assert "0.53123 (#0)" in proc.stdout
    proc = _piped("status", "--study", NAME, "--storage", url, cwd=tmp_path)
    assert "…" not in proc.stdout and "lr0=0.01, lrf=0.1, momentum=0.937" in proc.stdout

    out = tmp_path / "a" / "folder" / "deep" / "enough" / "that" / "the" / "line" / "wraps" / "hyp.yaml"
    proc = _piped("export", "--study", NAME, "--storage", url, "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"train with: yolo train cfg={out}\n" in proc.stderr  # the command on one line, whole
