"""Storage and output paths: read-only commands never create a storage, unwritable paths are one line.

The read-only folder is a real read-only mount (a tmpfs mounted ``ro``: ``chmod 555`` does not stop
root); where mounting is not allowed, a path below a plain file stands in for it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from hpo.cli.app import main

from conftest import hpo_cmd, tiny_spec_dict


@pytest.fixture
def read_only(tmp_path: Path):
    """A folder nothing can be written to (not even by root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                             capture_output=True).returncode == 0
    if not mounted:
        ro.rmdir()
        ro.write_text("a file, so nothing can be created below it\n")
    try:
        yield ro
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("hpo: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [["status"], ["status", "--study", "x"], ["export", "--study", "x"],
                                     ["report", "--study", "x"], ["retrain", "--study", "x"]])
def test_read_only_commands_never_create_storage(command: list[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = _one_line_error(capsys)
    assert f"no storage at {tmp_path / 'storage' / 'hpo.db'} (run `hpo launch` first or pass --storage)" in err
    assert list(tmp_path.iterdir()) == []  # no ./storage/hpo.db, no runs/ folder

    missing = tmp_path / "nothere" / "hpo.db"
    assert main([*command, "--storage", str(missing)]) == 2
    assert f"no storage at {missing} " in _one_line_error(capsys)
    assert not (tmp_path / "nothere").exists()


def test_dashboard_never_creates_storage(tmp_path: Path) -> None:
    proc = subprocess.run(hpo_cmd("dashboard", "--port", "0"), capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert proc.returncode == 2 and "no storage at " in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def _study_file(tmp_path: Path, toy_data: Path) -> Path:
    path = tmp_path / "ro_study.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(toy_data, name="ro_study", epochs=1, trials=1)))
    return path


def test_launch_on_unwritable_paths_is_one_line_and_creates_nothing(
        read_only: Path, tmp_path: Path, toy_data: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    spec = _study_file(tmp_path, toy_data)
    base = ["launch", "--study", str(spec), "--device", "cpu", "--trainer", "curve", "--artifacts", "off"]

    assert main([*base, "--storage", str(read_only / "sub" / "hpo.db")]) == 2
    err = _one_line_error(capsys)
    assert f"{read_only / 'sub'}: --storage: cannot write here:" in err

    db = tmp_path / "ok.db"
    assert main([*base, "--storage", str(db), "--runs-dir", str(read_only / "runs")]) == 2
    err = _one_line_error(capsys)
    assert f"{read_only / 'runs'}: --runs-dir: cannot write here:" in err
    assert not db.exists()  # checked before the study was created: nothing is left behind

    assert main([*base, "--storage", str(db), "--runs-dir", str(tmp_path / "runs"), "--create-only"]) == 0
    capsys.readouterr()
    assert optuna.study.get_all_study_names(f"sqlite:///{db}") == ["ro_study"]
    # Joining later with a bad runs folder: still one line, before any worker starts.
    assert main([*base, "--storage", str(db), "--runs-dir", str(read_only / "runs")]) == 2
    _one_line_error(capsys)


def test_export_and_report_into_unwritable_folder(read_only: Path, tmp_path: Path, toy_data: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    spec = _study_file(tmp_path, toy_data)
    db = str(tmp_path / "e.db")
    assert main(["launch", "--study", str(spec), "--storage", db, "--device", "cpu", "--trainer", "curve",
                 "--artifacts", "off"]) == 0
    capsys.readouterr()
    assert main(["export", "--study", "ro_study", "--storage", db, "-o", str(read_only / "hyp.yaml")]) == 2
    assert f"{read_only}: --output: cannot write here:" in _one_line_error(capsys)
    assert main(["report", "--study", "ro_study", "--storage", db, "-o", str(read_only / "rep")]) == 2
    assert f"{read_only / 'rep'}: --output: cannot write here:" in _one_line_error(capsys)
