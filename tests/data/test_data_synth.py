"""The synthetic AI Hub twin: layout, names, JSON, statistics, quirks, determinism."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import numpy as np
import pytest
from conftest_data import tree

from hpo.data import aihub, jpeg
from hpo.data.synth import _allocate, _plan, generate
from hpo.errors import HpoError

FOLDERS = [aihub.folder_name(kind, animal) for kind, animal in aihub.ZIP_NAMES]


def test_layout_names_sizes_and_json(tmp_path):
    s = generate(tmp_path / "raw", cows=30, pigs=12, scale=0.05, seed=3)
    raw = tmp_path / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(FOLDERS)
    cow_images = sorted((raw / "[원천]소_bbox").iterdir())
    pig_labels = sorted((raw / "[라벨]돼지_bbox").iterdir())
    assert [p.name for p in cow_images[:2]] == ["livestock_cow_bbox_000001.jpg",
                                                "livestock_cow_bbox_000002.jpg"]
    assert len(cow_images) == 30 and len(pig_labels) == 12
    assert s.images == {"cow": 30, "pig": 12}
    sizes = Counter()
    boxes = 0
    for label in sorted(raw.glob("[[]라벨]*/*.json")):
        doc = json.loads(label.read_text())
        info = doc["label_info"]
        animal = aihub.FILE_RE.match(label.name).group(2)
        image = raw / aihub.folder_name("image", animal) / f"{label.stem}.jpg"
        head = jpeg.probe(image)
        assert (head.width, head.height) == (info["image"]["width"], info["image"]["height"])
        assert info["image"]["file_name"] == image.name
        sizes[(animal, head.width, head.height)] += 1
        for ann in info["annotations"]:
            x1, y1, x2, y2 = ann["bbox"]  # corner format
            assert x2 > x1 and y2 > y1
            # category_id never encodes the YOLO class
            assert ann["category_id"] != aihub.CLASS_ID[animal]
            boxes += 1
    assert boxes == sum(s.boxes.values())
    assert sizes[("cow", 96, 54)] == 30
    assert sizes[("pig", 96, 54)] + sizes[("pig", 64, 48)] == 12 and sizes[("pig", 64, 48)] >= 2
    assert s.empty_images >= 1  # a few images without a box, as in the real set


def test_box_count_distribution_and_sizes_at_real_proportions():
    specs = _plan(12152, 4303, seed=0, corrupt=0)
    for animal in ("cow", "pig"):
        counts = Counter(s.boxes for s in specs if s.animal == animal)
        assert dict(counts) == aihub.BOX_COUNT_HIST[animal]
        sizes = Counter((s.width, s.height) for s in specs if s.animal == animal)
        assert dict(sizes) == aihub.IMAGE_SIZES[animal]
    cow_boxes = sum(s.boxes for s in specs if s.animal == "cow")
    pig_boxes = sum(s.boxes for s in specs if s.animal == "pig")
    assert 38_000 < cow_boxes < 42_000 and 44_000 < pig_boxes < 48_000  # "about 40k / 46k"
    # Published bucket totals of the real set (train + valid).
    buckets = Counter(aihub.bucket(s.animal, s.boxes) for s in specs)
    assert [buckets[c] for c in aihub.BUCKET_COLUMNS] == [7383, 3413, 1356, 506, 2749, 1048]


def test_allocate_keeps_proportions_for_small_counts():
    rng = np.random.default_rng(0)
    values = _allocate({"a": 3, "b": 1}, 10, rng)
    assert Counter(values) == {"a": 8, "b": 2} or Counter(values) == {"a": 7, "b": 3}
    assert _allocate({"a": 1}, 0, rng) == []


def test_deterministic_for_a_seed_and_different_across_seeds(tmp_path):
    a = generate(tmp_path / "a", cows=9, pigs=3, scale=0.05, seed=1, corrupt=2)
    b = generate(tmp_path / "b", cows=9, pigs=3, scale=0.05, seed=1, corrupt=2)
    generate(tmp_path / "c", cows=9, pigs=3, scale=0.05, seed=2)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert a.corrupt == b.corrupt
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


def test_process_pool_gives_the_same_bytes(tmp_path):
    generate(tmp_path / "one", cows=200, pigs=70, scale=0.03, seed=5, workers=1)
    generate(tmp_path / "two", cows=200, pigs=70, scale=0.03, seed=5, workers=2)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_corrupt_files(tmp_path):
    s = generate(tmp_path / "raw", cows=12, pigs=4, scale=0.05, seed=0, corrupt=6)
    kinds = Counter(c["kind"] for c in s.corrupt)
    assert kinds == {"truncated_jpg": 2, "invalid_json": 2, "missing_field": 2}
    raw = tmp_path / "raw"
    for c in s.corrupt:
        animal = aihub.FILE_RE.match(c["file"]).group(2)
        kind = "image" if c["file"].endswith(".jpg") else "label"
        data = (raw / aihub.folder_name(kind, animal) / c["file"]).read_bytes()
        if c["kind"] == "truncated_jpg":
            with pytest.raises(jpeg.ImageError, match="no EOI"):
                jpeg.probe_bytes(data)
        elif c["kind"] == "invalid_json":
            with pytest.raises(ValueError):
                json.loads(data)
        else:
            assert "width" not in json.loads(data)["label_info"]["image"]


def test_zip_mode_writes_the_four_korean_zips(tmp_path):
    generate(tmp_path / "z", cows=6, pigs=2, scale=0.05, seed=0, zip=True)
    names = sorted(p.name for p in (tmp_path / "z").iterdir() if not p.name.startswith("."))
    assert names == sorted(aihub.ZIP_NAMES.values())
    with zipfile.ZipFile(tmp_path / "z" / "[원천]돼지_bbox.zip") as z:
        assert z.namelist() == ["livestock_pig_bbox_000001.jpg", "livestock_pig_bbox_000002.jpg"]
    with zipfile.ZipFile(tmp_path / "z" / "[라벨]소_bbox.zip") as z:
        assert len(z.namelist()) == 6 and all("/" not in n for n in z.namelist())
    again = tmp_path / "z2"
    generate(again, cows=6, pigs=2, scale=0.05, seed=0, zip=True)
    assert tree(tmp_path / "z") == tree(again)


def test_rerun_replaces_and_foreign_folders_are_protected(tmp_path):
    out = tmp_path / "raw"
    generate(out, cows=10, pigs=4, scale=0.05, seed=0)
    generate(out, cows=3, pigs=1, scale=0.05, seed=0)
    assert len(list((out / "[원천]소_bbox").iterdir())) == 3
    generate(out, cows=3, pigs=1, scale=0.05, seed=0, zip=True)  # folders replaced by zips
    assert not (out / "[원천]소_bbox").exists() and (out / "[원천]소_bbox.zip").is_file()
    foreign = tmp_path / "foreign"
    (foreign / "[원천]소_bbox").mkdir(parents=True)
    with pytest.raises(HpoError, match="refusing to replace"):
        generate(foreign, cows=1, pigs=1, scale=0.05, seed=0)


@pytest.mark.parametrize("kw, field", [
    ({"cows": 0, "pigs": 0}, "--cows/--pigs"),
    ({"scale": 0.0}, "--scale"),
    ({"scale": 1.5}, "--scale"),
    ({"scale": 0.01}, "--scale"),
    ({"corrupt": 99}, "--corrupt"),
    ({"style": "desert"}, "--style"),
])
def test_bad_options(tmp_path, kw, field):
    args = {"cows": 2, "pigs": 1, "scale": 0.05, "seed": 0} | kw
    with pytest.raises(HpoError, match=field):
        generate(tmp_path / "x", **args)


def test_pasture_style_changes_the_look_not_the_format(tmp_path):
    """The pretraining twin (bench/pretrain.py) is another look of the same format and statistics."""
    farm = generate(tmp_path / "farm", cows=12, pigs=4, scale=0.1, seed=4)
    past = generate(tmp_path / "past", cows=12, pigs=4, scale=0.1, seed=4, style="pasture")
    assert past.images == farm.images and past.boxes == farm.boxes and past.style == "pasture"
    assert "style" not in farm.to_dict()  # the default twin's marker and --json are unchanged
    assert json.loads((tmp_path / "past" / ".hpo-synth.json").read_text())["style"] == "pasture"
    means, areas = {}, {}
    for name in ("farm", "past"):
        raw = tmp_path / name
        pixels = [cv2_mean(p) for p in sorted(raw.glob("[[]원천]*/*.jpg"))]
        means[name] = np.mean(pixels, axis=0)
        boxes = [a["bbox"] for p in sorted(raw.glob("[[]라벨]*/*.json"))
                 for a in json.loads(p.read_text())["label_info"]["annotations"]]
        areas[name] = np.median([(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes])
    green = {k: m[1] - (m[0] + m[2]) / 2 for k, m in means.items()}  # BGR
    assert green["past"] > green["farm"] + 5  # grass, not pens
    assert areas["past"] < 0.7 * areas["farm"]  # smaller animals
    assert tree(tmp_path / "past") == tree(generate(tmp_path / "again", cows=12, pigs=4, scale=0.1,
                                                    seed=4, style="pasture").out)


def cv2_mean(path):
    import cv2

    return cv2.imread(str(path)).reshape(-1, 3).mean(axis=0)


def test_night_style_is_the_farm_scene_in_infrared(tmp_path):
    """Same layout and labels as the farm twin of that seed, grey pixels: a pure appearance shift."""
    generate(tmp_path / "farm", cows=6, pigs=2, scale=0.1, seed=7)
    generate(tmp_path / "night", cows=6, pigs=2, scale=0.1, seed=7, style="night")
    farm_labels = sorted((tmp_path / "farm").glob("[[]라벨]*/*.json"))
    for label in farm_labels:
        other = tmp_path / "night" / label.relative_to(tmp_path / "farm")
        assert json.loads(other.read_text()) == json.loads(label.read_text())
    for image in sorted((tmp_path / "night").glob("[[]원천]*/*.jpg")):
        b, g, r = cv2_mean(image)
        assert abs(b - g) < 3 and abs(g - r) < 3  # no colour left
