"""``check_dataset``: prepared datasets and generic YOLO data yamls, good and broken."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest_data import jpeg_bytes, twin

from hpo.data.check import check_dataset
from hpo.data.prepare import prepare
from hpo.errors import HpoError


def _yolo(root: Path, splits: dict[str, dict[str, str]], yaml_text: str) -> Path:
    """A generic YOLO dataset: root/images/<split>/<name>.jpg + root/labels/<split>/<name>.txt."""
    for split, labels in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for name, text in labels.items():
            (root / "images" / split / f"{name}.jpg").write_bytes(jpeg_bytes(16, 16))
            if text is not None:
                (root / "labels" / split / f"{name}.txt").write_text(text)
    path = root / "data.yaml"
    path.write_text(yaml_text)
    return path


GOOD = {"train": {"a": "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n", "b": "", "c": None,
                  "d": "2 0.1 0.1 0.2 0.1 0.2 0.2\n"},
        "val": {"e": "1 0.5 0.5 0.5 0.5\n"}}


def test_prepared_dataset_counts(tmp_path_factory):
    raw = twin(tmp_path_factory, cows=45, pigs=15, scale=0.05, seed=0)
    out = raw.parent / "out"
    report = prepare(raw, out)
    for name, train in (("train", "train"), ("mini", "mini"), ("full", "full")):
        summary = check_dataset(out / f"{name}.yaml")
        assert summary.names == ["pig", "cow"] and summary.root == out
        assert summary.splits["train"].images == report.splits[train]["images"]
        assert summary.splits["val"].images == report.splits["valid"]["images"]
        for cls, animal in enumerate(("pig", "cow")):
            assert summary.splits["train"].boxes[cls] == report.splits[train]["classes"][animal]["boxes"]
        tr = summary.splits["train"]
        assert tr.images_per_class[0] == report.splits[train]["classes"]["pig"]["images"]
        assert tr.images_per_class[0] + tr.images_per_class[1] == tr.labelled  # one class each
        assert tr.labelled + tr.backgrounds == report.splits[train]["images"]
    d = check_dataset(out / "full.yaml").to_dict()
    assert d["nc"] == 2 and d["splits"]["val"]["images"] == report.splits["valid"]["images"]


def test_generic_yolo_yaml_relative_paths_dict_names_and_txt_lists(tmp_path):
    data = _yolo(tmp_path, GOOD, "train: images/train\nval: images/val\n"
                                 "names: {0: a, 1: b, 2: c}\n")  # no path: the yaml's folder
    s = check_dataset(data)
    assert s.names == ["a", "b", "c"] and s.root == tmp_path and not s.warnings[:-1]
    tr = s.splits["train"]
    assert (tr.images, tr.labelled, tr.backgrounds) == (4, 2, 2)
    assert tr.boxes == [1, 1, 1] and tr.images_per_class == [1, 1, 1]
    assert any("val has only 1 image" in w for w in s.warnings)
    lst = tmp_path / "train.txt"
    lst.write_text("./images/train/a.jpg\n" + str(tmp_path / "images/train/b.jpg") + "\n")
    data.write_text(f"train: {lst}\nval: [images/val]\nnc: 3\n")
    s = check_dataset(data)
    assert s.splits["train"].images == 2 and s.names == ["class0", "class1", "class2"]
    # A relative ``path`` not under the working directory is found next to the yaml, with a warning.
    outer = tmp_path.parent / f"{tmp_path.name}.yaml"
    outer.write_text(f"path: {tmp_path.name}\ntrain: images/train\nval: images/val\nnc: 3\n")
    s = check_dataset(outer)
    assert s.root == tmp_path
    assert any("Ultralytics resolves a relative path against the working directory" in w
               for w in s.warnings)


@pytest.mark.parametrize("label, message", [
    ("3 0.5 0.5 0.1 0.1\n", r"line 1: class 3 is not in 0..2"),
    ("0 0.5 0.5 0.1\n", r"line 1: expected 'class cx cy w h'"),
    ("0 0.5 x 0.1 0.1\n", r"line 1: not a number"),
    ("0 0.5 0.5 0.1 0.1\n0 1.5 0.5 0.1 0.1\n", r"line 2: coordinates must be normalised"),
    ("0 0.5 0.5 0 0.1\n", r"line 1: box has no area"),
    ("1.5 0.5 0.5 0.1 0.1\n", r"line 1: class 1.5 is not in 0..2"),
])
def test_broken_labels(tmp_path, label, message):
    splits = {"train": dict(GOOD["train"], z=label), "val": GOOD["val"]}
    data = _yolo(tmp_path, splits, "train: images/train\nval: images/val\nnames: [a, b, c]\n")
    with pytest.raises(HpoError, match=r"1 broken label file\(s\) in the train split; first: .*z\.txt: "
                       + message):
        check_dataset(data)


@pytest.mark.parametrize("text, message", [
    ("train: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("val: images/val\nnames: [a]\n", "train: missing"),
    ("train: images/train\nnames: [a]\n", "val: missing"),
    ("train: images/train\nval: images/val\n", "names: needs 'names'"),
    ("train: images/train\nval: images/val\nnames: [a, b]\nnc: 3\n", "nc: nc is 3 but names has 2"),
    ("train: images/nope\nval: images/val\nnames: [a, b, c]\n", "train: not found: .*images/nope"),
    ("path: /no/such/root\ntrain: a\nval: b\nnames: [a]\n", "path: dataset root not found"),
    ("train: images/empty\nval: images/val\nnames: [a, b, c]\n", "train: no images found"),
])
def test_broken_yaml(tmp_path, text, message):
    data = _yolo(tmp_path, GOOD, text)
    (tmp_path / "images" / "empty").mkdir()
    with pytest.raises(HpoError, match=message):
        check_dataset(data)


def test_missing_yaml_and_missing_listed_image(tmp_path):
    with pytest.raises(HpoError, match="data yaml not found"):
        check_dataset(tmp_path / "nope.yaml")
    data = _yolo(tmp_path, GOOD, "")
    (tmp_path / "l.txt").write_text("./images/train/a.jpg\n./images/train/gone.jpg\n")
    data.write_text("train: l.txt\nval: images/val\nnames: [a, b, c]\n")
    with pytest.raises(HpoError, match=r"1 listed image\(s\) do not exist, first: .*gone.jpg"):
        check_dataset(data)


def test_fast_on_16k_labels(tmp_path):
    """~16k label files check in well under the few-second budget (no image is opened)."""
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    (tmp_path / "img").write_bytes(b"")  # never opened
    (tmp_path / "lbl").write_text("1 0.5 0.5 0.1 0.1\n" * 5)
    for i in range(16_000):  # hard links: quick to make, real files to read
        os.link(tmp_path / "img", images / f"{i}.jpg")
        os.link(tmp_path / "lbl", labels / f"{i}.txt")
    data = tmp_path / "d.yaml"
    data.write_text("train: images/train\nval: images/train\nnames: [pig, cow]\n")
    start = time.perf_counter()
    s = check_dataset(data)
    assert time.perf_counter() - start < 5
    assert s.splits["train"].boxes == [0, 80_000]
