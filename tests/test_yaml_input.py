"""User YAML is bounded: alias bombs, recursive aliases and huge files are refused in milliseconds
with one short error line (exit 2), in study files, YOLOv5 hyp files and data yamls alike."""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from hpo import yamlio
from hpo.cli import main
from hpo.errors import MAX_MESSAGE, HpoError
from hpo.spec import load_spec

from conftest import REPO, hpo_cmd

DEMO_TEXT = (REPO / "studies" / "demo.yaml").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)


def bomb(levels: int, width: int = 9) -> str:
    """An inline "billion laughs": ``width ** levels`` scalars from a few hundred bytes."""
    parts = [f"&l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        parts.append(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "[" + ", ".join(parts) + "]"


def study_with(tmp_path: Path, line_in_train: str = "", top_level: str = "") -> Path:
    """The demo study with one extra line under ``train:`` and/or at the top level."""
    text = DEMO_TEXT
    if line_in_train:
        text = text.replace("\ntrain:\n", f"\ntrain:\n  {line_in_train}\n", 1)
        assert line_in_train in text
    path = tmp_path / "bomb.yaml"
    path.write_text(text + (f"\n{top_level}\n" if top_level else ""))
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str, float]:
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    return code, capsys.readouterr().err, elapsed


def assert_one_short_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("hpo: error: "), err[:300]
    assert len(err) < MAX_MESSAGE + 300


@pytest.mark.parametrize("levels", [6, 9], ids=["half-million", "387-million"])
def test_alias_bomb_in_train_classes_is_refused_fast(tmp_path: Path, capsys, levels: int) -> None:
    path = study_with(tmp_path, line_in_train=f"classes: {bomb(levels)}")
    assert path.stat().st_size < len(DEMO_TEXT) + 1000  # the bomb itself: well under 1 kB
    code, err, elapsed = run_cli(["launch", "--study", str(path)], capsys)
    assert code == 2
    assert_one_short_line(err)
    assert f"{path}: line " in err and "aliases expand to more than 100,000 nodes" in err
    assert elapsed < 15.0, elapsed  # expanding it took 107 s and 13.7 GB; a generous bound, not a timing
    assert not (tmp_path / "runs").exists() and not (tmp_path / "storage").exists()


def test_alias_bomb_in_description_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(DEMO_TEXT.replace("\ndescription: fine-tune", f"\ndescription: {bomb(9)}\n# fine-tune", 1))
    assert "lol" in path.read_text()
    proc = subprocess.run(hpo_cmd("launch", "--study", str(path)), capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # before: 13.7 GB, 107 s and a 2 GB error line
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and len(proc.stderr) < 500
    line = 1 + next(i for i, text in enumerate(DEMO_TEXT.splitlines()) if text.startswith("description:"))
    assert proc.stderr.startswith(f"hpo: error: {path}: line {line}: aliases expand to more than")
    assert "lol" not in proc.stderr


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = study_with(tmp_path, line_in_train="classes: &loop [0, *loop]")
    with pytest.raises(HpoError, match=r"bomb.yaml: line \d+: an alias refers to a node that contains it"):
        load_spec(path)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("common: &c {lr0: 0.01, momentum: 0.9}\nmine:\n  <<: *c\n  lr0: 0.02\nlist: [*c, *c]\n")
    assert yamlio.load(path) == {"common": {"lr0": 0.01, "momentum": 0.9},
                                 "mine": {"lr0": 0.02, "momentum": 0.9},
                                 "list": [{"lr0": 0.01, "momentum": 0.9}] * 2}


def test_huge_study_file_is_refused_without_parsing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "w") as f:
        f.write(DEMO_TEXT)
        f.write("# padding\n" * 5_000_000)  # 50 MB of comments: valid YAML, 286 s before
    code, err, elapsed = run_cli(["launch", "--study", str(path)], capsys)
    assert code == 2 and elapsed < 15.0, elapsed  # expanding it took 107 s and 13.7 GB; a generous bound, not a timing
    assert_one_short_line(err)
    assert err.strip() == f"hpo: error: {path}: file is 47.7 MiB, more than the 1 MiB a YAML input may have"


@pytest.mark.parametrize("field,message", [("trials", "trials: Input should be a valid integer"),
                                           ("weight_decay", "train.weight_decay: ")])
def test_long_values_are_not_echoed_whole(tmp_path: Path, capsys, field: str, message: str) -> None:
    data = copy.deepcopy(DEMO)
    (data if field == "trials" else data["train"])[field] = "x" * 500_000
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data))
    code, err, _ = run_cli(["launch", "--study", str(path)], capsys)
    assert code == 2
    assert_one_short_line(err)
    assert err.startswith(f"hpo: error: {path}: {message}")
    assert "'xxxx" in err and "x" * 100 not in err and len(err) < 300


def test_data_yaml_bomb_is_refused(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(f"train: images/train\nval: images/val\nnames: {bomb(9)}\n")
    code, err, elapsed = run_cli(["data", "check", str(data)], capsys)
    assert code == 2 and elapsed < 15.0
    assert_one_short_line(err)
    assert f"{data}: line 3: aliases expand to more than" in err


def test_yolov5_hyp_file_bomb_is_refused(tmp_path: Path, capsys) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text(f"lr0: 0.01\nanchors: {bomb(9)}\n")
    path = study_with(tmp_path, top_level=f"base_from: {hyp}")
    code, err, elapsed = run_cli(["launch", "--study", str(path)], capsys)
    assert code == 2 and elapsed < 15.0
    assert_one_short_line(err)
    assert err.startswith(f"hpo: error: {path}: base_from: {hyp}: line 2: aliases expand to more than")


def test_one_loader_for_every_user_yaml() -> None:
    """No module reads a user's YAML with PyYAML directly: hpo.yamlio is the one way in."""
    direct = [p.relative_to(REPO) for p in (REPO / "hpo").rglob("*.py")
              if p.name != "yamlio.py" and ("yaml.safe_load(" in p.read_text() or "yaml.load(" in p.read_text())]
    assert [str(p) for p in direct] == ["hpo/hyps.py"]  # Ultralytics' own default.yaml, not user input
