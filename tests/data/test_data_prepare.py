"""``prepare``: conversion, split files, yamls, report, bad data, determinism, input layouts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest_data import flat_set, jpeg_bytes, tree, twin, write_pair

from hpo.data import aihub
from hpo.data.prepare import prepare
from hpo.data.synth import generate
from hpo.errors import HpoError


def _stems(folder: Path) -> set[str]:
    return {p.name.rsplit(".", 1)[0] for p in folder.iterdir()}


def test_conversion_exact_on_hand_made_json(tmp_path):
    raw = flat_set(tmp_path / "raw")
    write_pair(raw, "cow", 101, 1920, 1080, [[100, 200, 500, 400], [-4, 1000, 60, 1083]])
    write_pair(raw, "pig", 101, 1280, 960, [[640, 480, 960, 720]], category_id=1)
    write_pair(raw, "pig", 102, 1920, 1080, [[0, 0, 960, 540]], category_id=3)
    write_pair(raw, "cow", 102, 1920, 1080, [])
    report = prepare(raw, tmp_path / "out")
    labels = tmp_path / "out" / "labels" / "full"
    assert (labels / "livestock_cow_bbox_000101.txt").read_text() == (
        "1 0.156250 0.277778 0.208333 0.185185\n"
        "1 0.015625 0.962963 0.031250 0.074074\n")  # clipped to (0, 1000, 60, 1080)
    assert (labels / "livestock_pig_bbox_000101.txt").read_text() == \
        "0 0.625000 0.625000 0.250000 0.250000\n"
    assert (labels / "livestock_pig_bbox_000102.txt").read_text() == \
        "0 0.250000 0.250000 0.500000 0.500000\n"
    assert (labels / "livestock_cow_bbox_000102.txt").read_text() == ""  # background
    assert report.clipped["boxes"] == 1
    assert report.clipped["files"] == [{"file": "livestock_cow_bbox_000101.jpg", "boxes": 1}]
    assert report.splits["full"]["images"] == 16
    assert report.splits["full"]["classes"]["pig"] == {"images": 6, "boxes": 10}


def test_layout_yamls_links_and_report(tmp_path_factory):
    raw = twin(tmp_path_factory, cows=45, pigs=15, scale=0.05, seed=0)
    out = raw.parent / "out"
    report = prepare(raw, out)
    images, labels = out / "images", out / "labels"
    full, train, valid, mini = (_stems(images / s) for s in ("full", "train", "valid", "mini"))
    assert len(full) == 60 and train | valid == full and not train & valid
    assert len(valid) == 12 and mini <= train
    for split in ("full", "train", "valid", "mini"):
        assert _stems(images / split) == _stems(labels / split)
        assert report.splits[split]["images"] == len(_stems(images / split))
    # images are hard links to the raw files, never copies
    some = sorted((images / "full").iterdir())[0]
    src = raw / aihub.folder_name("image", aihub.FILE_RE.match(some.name).group(2)) / some.name
    assert os.stat(some).st_ino == os.stat(src).st_ino
    assert report.links == {"hardlink": 60}
    for name, train_dir in (("train", "train"), ("mini", "mini"), ("full", "full")):
        data = yaml.safe_load((out / f"{name}.yaml").read_text())
        assert data == {"path": str(out), "train": str(images / train_dir),
                        "val": str(images / "valid"), "nc": 2, "names": ["pig", "cow"]}
        assert Path(data["train"]).is_absolute()
    assert "names: [pig, cow]" in (out / "train.yaml").read_text()
    js = json.loads((out / "split_report.json").read_text())
    assert js["generator"] == "hpo data prepare" and js["options"]["mini_folds"] == [0, 1]
    assert js["splits"]["valid"]["buckets"] == report.splits["valid"]["buckets"]
    md = (out / "split_report.md").read_text()
    assert "| | cow <4 | cow 4-5 | cow >=6 | pig <8 | pig 8-12 | pig >=13 | total |" in \
        md.replace("|  |", "| |")
    for split in ("train", "valid", "mini", "full"):
        row = [str(report.splits[split]["buckets"][c]) for c in aihub.BUCKET_COLUMNS]
        assert f"| {split} | {' | '.join(row)} | {report.splits[split]['images']} |" in md
    # folds add up; mini = folds 0 + 1, valid = fold 4
    assert sum(f["images"] for f in report.folds) == 60
    assert report.splits["mini"]["images"] == report.folds[0]["images"] + report.folds[1]["images"]
    assert report.splits["valid"]["buckets"] == report.folds[4]["buckets"]
    assert not list(out.glob(".hpo-*"))


def test_options_change_mini_valid_and_extra(tmp_path_factory):
    raw = twin(tmp_path_factory, cows=45, pigs=15, scale=0.05, seed=0)
    out = raw.parent / "out"
    report = prepare(raw, out, folds=4, valid_fold=0, seed=1, mini_folds=[2],
                     stratify_extra=["ratio", "size"])
    assert report.splits["valid"]["buckets"] == report.folds[0]["buckets"]
    assert report.splits["mini"]["images"] == report.folds[2]["images"]
    assert len(report.folds) == 4
    assert set(report.extra["full"]) == {"ratio <0.8", "ratio 0.8-1.25", "ratio >=1.25",
                                         "size <0.05", "size 0.05-0.15", "size >=0.15"}
    assert "extra stratification bin" in (out / "split_report.md").read_text()
    default_mini = prepare(raw, out, valid_fold=0).options["mini_folds"]
    assert default_mini == [1, 2]


def test_deterministic_and_rerun_replaces_cleanly(tmp_path_factory):
    raw = twin(tmp_path_factory, cows=45, pigs=15, scale=0.05, seed=0)
    out = raw.parent / "out"
    prepare(raw, out)
    first = tree(out)
    prepare(raw, out)
    assert tree(out) == first
    (out / "labels" / "train.cache").write_bytes(b"stale")  # what Ultralytics leaves behind
    report = prepare(raw, out, seed=3)
    assert not (out / "labels" / "train.cache").exists()
    assert len(list((out / "images" / "valid").iterdir())) == report.splits["valid"]["images"]
    assert tree(out) != first
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["images", "labels", "train.yaml", "mini.yaml", "full.yaml", "split_report.md",
         "split_report.json"])


def test_zips_folders_and_flat_give_the_same_dataset(tmp_path):
    generate(tmp_path / "folders", cows=20, pigs=8, scale=0.05, seed=4)
    generate(tmp_path / "zips", cows=20, pigs=8, scale=0.05, seed=4, zip=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "folders").glob("*/*"):
        shutil.copy(p, flat / p.name)
    results = {}
    for name in ("folders", "zips", "flat"):
        report = prepare(tmp_path / name, tmp_path / f"out-{name}")
        results[name] = (tree(tmp_path / f"out-{name}" / "labels"),
                         tree(tmp_path / f"out-{name}" / "images"), report.splits)
    assert results["folders"] == results["zips"] == results["flat"]
    assert prepare(tmp_path / "zips", tmp_path / "out-zips").links == {"extracted": 28}


def test_bad_data_is_skipped_and_reported(tmp_path):
    raw = generate(tmp_path / "raw", cows=24, pigs=8, scale=0.05, seed=0, corrupt=3).out
    cow_img, cow_lbl = raw / "[원천]소_bbox", raw / "[라벨]소_bbox"
    pig_img, pig_lbl = raw / "[원천]돼지_bbox", raw / "[라벨]돼지_bbox"
    # corrupt=3 made a truncated jpg, an invalid JSON and a JSON without width; add the rest
    os.remove(cow_lbl / "livestock_cow_bbox_000024.json")          # image without label
    os.remove(pig_img / "livestock_pig_bbox_000008.jpg")           # label without image
    (pig_img / "livestock_pig_bbox_000007.jpg").write_bytes(jpeg_bytes(20, 20))  # size mismatch
    (cow_img / "notes.json").write_text("{}")                      # unrecognised name
    shutil.copy(cow_img / "livestock_cow_bbox_000023.jpg", raw / "livestock_cow_bbox_000023.jpg")
    doc = json.loads((pig_lbl / "livestock_pig_bbox_000006.json").read_text())
    doc["label_info"]["annotations"].append({"bbox": [5, 5, 5, 9], "category_id": 1})
    (pig_lbl / "livestock_pig_bbox_000006.json").write_text(json.dumps(doc))  # zero-area box
    report = prepare(raw, tmp_path / "out")
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert reasons["[원천]소_bbox/livestock_cow_bbox_000024.jpg"] == "image without label"
    assert reasons["[라벨]돼지_bbox/livestock_pig_bbox_000008.json"] == "label without image"
    assert reasons["[원천]돼지_bbox/livestock_pig_bbox_000007.jpg"].startswith(
        "image is 20x20 but its label says ")
    kinds = sorted(r for r in reasons.values() if r.startswith(("truncated", "invalid JSON",
                                                                "missing field")))
    assert len(kinds) == 3
    assert kinds[0].startswith("invalid JSON") and kinds[1] == "missing field label_info.image.width"
    assert kinds[2] == "truncated JPEG (no EOI marker)"
    assert report.dropped == {"boxes": 1, "files": [
        {"file": "[원천]돼지_bbox/livestock_pig_bbox_000006.jpg", "boxes": 1}]}
    assert report.duplicates == ["[원천]소_bbox/livestock_cow_bbox_000023.jpg"]
    assert report.unrecognised == ["[원천]소_bbox/notes.json"]
    assert report.splits["full"]["images"] == 32 - len(report.skipped)
    md = (tmp_path / "out" / "split_report.md").read_text()
    assert "image without label" in md and "truncated JPEG" in md
    skipped_stems = {Path(f).stem for f in reasons}
    assert not skipped_stems & _stems(tmp_path / "out" / "images" / "full")
    with pytest.raises(HpoError, match=r"--strict: the raw data has problems: .*file\(s\) skipped"):
        prepare(raw, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "train.yaml").exists()


def test_strict_passes_clean_data_and_fails_on_a_clipped_box(tmp_path):
    raw = flat_set(tmp_path / "raw")
    prepare(raw, tmp_path / "out", strict=True)
    write_pair(raw, "cow", 50, 64, 36, [[-2, 0, 10, 10]])
    with pytest.raises(HpoError, match=r"1 box\(es\) clipped; first: livestock_cow_bbox_000050"):
        prepare(raw, tmp_path / "out", strict=True)
    assert (tmp_path / "out" / "train.yaml").exists()  # the earlier output is untouched


def test_missing_and_unrecognised_input(tmp_path):
    with pytest.raises(HpoError, match="raw data folder not found: expected the four AI Hub zips"):
        prepare(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HpoError, match=r"empty: no AI Hub livestock files found: expected"):
        prepare(tmp_path / "empty", tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "img001.jpg").write_bytes(jpeg_bytes(16, 16))
    with pytest.raises(HpoError, match=r"found 1 other jpg/json files"):
        prepare(other, tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HpoError, match="is not a folder"):
        prepare(tmp_path / "file", tmp_path / "out")
    bad_zip = tmp_path / "badzip"
    bad_zip.mkdir()
    (bad_zip / "[원천]소_bbox.zip").write_bytes(b"not a zip")
    flat_set(bad_zip)
    report = prepare(bad_zip, tmp_path / "out")
    assert report.skipped[0]["file"] == "[원천]소_bbox.zip"
    assert report.skipped[0]["reason"].startswith("unreadable zip")


@pytest.mark.parametrize("kw, message", [
    ({"folds": 1}, "--folds: need at least 2 folds"),
    ({"valid_fold": 5}, "--valid-fold: must be a fold index 0..4"),
    ({"mini_folds": [4]}, "--mini-folds: fold 4 is the validation fold"),
    ({"mini_folds": [0, 7]}, "--mini-folds: fold 7 is not in 0..4"),
    ({"mini_folds": []}, "--mini-folds: needs at least one fold"),
    ({"stratify_extra": ["colour"]}, "--stratify-extra: unknown label 'colour'"),
])
def test_bad_options(tmp_path, kw, message):
    raw = flat_set(tmp_path / "raw")
    with pytest.raises(HpoError, match=message):
        prepare(raw, tmp_path / "out", **kw)


def test_too_few_images_for_the_folds(tmp_path):
    raw = flat_set(tmp_path / "raw", cows=2, pigs=1)
    with pytest.raises(HpoError, match="only 3 usable image"):
        prepare(raw, tmp_path / "out")


def test_demo_layout_raw_inside_out_and_foreign_out(tmp_path):
    demo = tmp_path / "demo"
    generate(demo / "raw", cows=20, pigs=5, scale=0.05, seed=0)
    before = tree(demo / "raw")
    prepare(demo / "raw", demo)
    prepare(demo / "raw", demo)  # the second run must not pick up its own images/ as raw data
    assert tree(demo / "raw") == before
    assert len(list((demo / "images" / "full").iterdir())) == 25
    # raw == out: outputs are excluded from the scan too
    same = tmp_path / "same"
    flat_set(same)
    prepare(same, same)
    first = tree(same)
    again = prepare(same, same)
    assert again.splits["full"]["images"] == 12 and again.unrecognised == []
    assert tree(same) == first
    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)
    with pytest.raises(HpoError, match="holds 'images' but no split_report.json"):
        prepare(demo / "raw", foreign)
    with pytest.raises(HpoError, match="inside the output's images/ folder"):
        prepare(demo / "images", demo)


def test_relative_symlinks_in_raw_are_followed(tmp_path):
    real = flat_set(tmp_path / "real")
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in real.iterdir():
        (raw / p.name).symlink_to(Path("..") / "real" / p.name)
    prepare(raw, tmp_path / "out")
    img = tmp_path / "out" / "images" / "train" / next(
        p.name for p in (tmp_path / "out" / "images" / "train").iterdir())
    assert img.read_bytes() == (real / img.name).read_bytes()
    assert os.stat(img).st_ino == os.stat(real / img.name).st_ino


def test_link_fallbacks_symlink_then_copy(tmp_path, monkeypatch):
    """Where hard links fail (raw on another file system), images are symlinked, else copied."""
    import errno

    raw = flat_set(tmp_path / "raw")

    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    report = prepare(raw, tmp_path / "sym")
    assert report.links == {"symlink": 12}
    for split in ("full", "train", "valid", "mini"):
        for p in (tmp_path / "sym" / "images" / split).iterdir():
            assert p.is_symlink() and p.read_bytes() == (raw / p.name).read_bytes()
        for p in (tmp_path / "sym" / "labels" / split).iterdir():  # survived the swap
            assert p.read_text() == (tmp_path / "sym" / "labels" / "full" / p.name).read_text()

    def no_symlink(*args, **kwargs):
        raise OSError(errno.EPERM, "no symlinks here")

    monkeypatch.setattr(os, "symlink", no_symlink)
    report = prepare(raw, tmp_path / "copy")
    assert report.links == {"copy": 12}
    some = next((tmp_path / "copy" / "images" / "train").iterdir())
    assert not some.is_symlink() and some.read_bytes() == (raw / some.name).read_bytes()
