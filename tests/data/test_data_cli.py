"""``hpo data ...`` through the real CLI, and Ultralytics reading what prepare writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest_data import flat_set

from hpo.cli import main


def test_synth_prepare_check_in_process(tmp_path, capsys):
    raw, out = tmp_path / "demo" / "raw", tmp_path / "demo"
    assert main(["data", "synth", str(raw), "--cows", "30", "--pigs", "10", "--scale", "0.05",
                 "--seed", "0", "--corrupt", "2"]) == 0
    assert "wrote 30 cow + 10 pig images" in capsys.readouterr().out
    assert main(["data", "synth", str(tmp_path / "r2"), "--pigs", "4", "--scale", "0.05",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == {"cow": 11, "pig": 4}  # real ratio
    assert main(["data", "prepare", str(raw), str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped 2 file(s)" in text and "cow <4" in text and str(out / "mini.yaml") in text
    assert main(["data", "prepare", str(raw), str(out), "--json", "--folds", "4",
                 "--valid-fold", "3", "--mini-folds", "0,2", "--stratify-extra", "ratio,size"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"] == {"folds": 4, "valid_fold": 3, "seed": 42, "mini_folds": [0, 2],
                                 "stratify_extra": ["ratio", "size"], "strict": False}
    assert report["splits"]["full"]["images"] == 38
    assert main(["data", "check", str(out / "full.yaml"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] == 38 and summary["names"] == ["pig", "cow"]
    assert main(["data", "check", str(out / "mini.yaml")]) == 0
    assert "OK, 2 classes" in capsys.readouterr().out


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    raw = flat_set(tmp_path / "raw")
    (raw / "livestock_cow_bbox_000001.json").write_text("{broken")
    cases = [
        (["data", "prepare", str(tmp_path / "nope"), str(tmp_path / "o")], "raw data folder not found"),
        (["data", "prepare", str(raw), str(tmp_path / "o"), "--strict"], "--strict: the raw data"),
        (["data", "prepare", str(raw), str(tmp_path / "o"), "--mini-folds", "a,b"],
         "--mini-folds: expected comma-separated fold numbers"),
        (["data", "prepare", str(raw), str(tmp_path / "o"), "--stratify-extra", "hue"],
         "--stratify-extra: unknown label 'hue'"),
        (["data", "check", str(tmp_path / "none.yaml")], "data yaml not found"),
        (["data", "synth", str(tmp_path / "s"), "--scale", "2"], "--scale: must be in (0, 1]"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hpo: error: ") and message in err and err.count("\n") == 1, err


def test_subprocess_exit_code_and_single_stderr_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "hpo", "data", "prepare", str(tmp_path / "empty"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: ")
    assert "no AI Hub livestock files found: expected the four AI Hub zips" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "train.yaml").exists()


def test_ultralytics_accepts_the_yamls_and_finds_every_label(tmp_path):
    from hpo.data.prepare import prepare
    from hpo.data.synth import generate
    from hpo.offline import import_ultralytics

    generate(tmp_path / "raw", cows=30, pigs=10, scale=0.05, seed=0)
    report = prepare(tmp_path / "raw", tmp_path / "ds")
    import_ultralytics()
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    for name, split in (("train", "train"), ("mini", "mini"), ("full", "full")):
        data = check_det_dataset(str(tmp_path / "ds" / f"{name}.yaml"))
        assert data["nc"] == 2 and data["names"] == {0: "pig", 1: "cow"}
        assert Path(data["train"]) == tmp_path / "ds" / "images" / split
        for key, expected in (("train", split), ("val", "valid")):
            ds = YOLODataset(img_path=data[key], data=data, task="detect", imgsz=64, augment=False)
            counts = report.splits[expected]
            assert len(ds.labels) == counts["images"]
            cls = [int(c) for lb in ds.labels for c in lb["cls"].ravel()]
            assert cls.count(0) == counts["classes"]["pig"]["boxes"]
            assert cls.count(1) == counts["classes"]["cow"]["boxes"]
    # one label cache per split, next to that split's label folder
    assert sorted(p.name for p in (tmp_path / "ds" / "labels").glob("*.cache")) == [
        "full.cache", "mini.cache", "train.cache", "valid.cache"]
