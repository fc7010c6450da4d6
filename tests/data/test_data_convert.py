"""AI Hub JSON -> YOLO lines, and the header-only JPEG check."""

from __future__ import annotations

import json

import pytest
from conftest_data import jpeg_bytes, label_doc

from hpo.data import aihub, jpeg
from hpo.data.convert import LabelError, parse_label


def _lines(label) -> list[list[str]]:
    return [line.split() for line in label.yolo_lines().splitlines()]


def test_corner_boxes_normalised_by_json_size_cow_1920x1080():
    doc = label_doc("cow", 1, 1920, 1080, [[100, 200, 500, 400], [0, 0, 1920, 1080]])
    label = parse_label(json.dumps(doc), aihub.CLASS_ID["cow"])
    assert _lines(label) == [
        ["1", "0.156250", "0.277778", "0.208333", "0.185185"],
        ["1", "0.500000", "0.500000", "1.000000", "1.000000"],
    ]
    assert (label.width, label.height, label.clipped, label.dropped) == (1920, 1080, 0, 0)


def test_pig_1280x960_class_from_caller_not_category_id():
    # category_id 1 is the *cow* class id in YOLO terms: it must be ignored.
    doc = label_doc("pig", 7, 1280, 960, [[640, 480, 960, 720]], category_id=1)
    label = parse_label(json.dumps(doc).encode(), aihub.CLASS_ID["pig"])
    assert _lines(label) == [["0", "0.625000", "0.625000", "0.250000", "0.250000"]]


def test_float_corners():
    doc = label_doc("cow", 1, 1920, 1080, [[10.5, 20.25, 30.5, 40.25]])
    (line,) = _lines(parse_label(json.dumps(doc), 1))
    assert [float(v) for v in line[1:]] == pytest.approx(
        [20.5 / 1920, 30.25 / 1080, 20 / 1920, 20 / 1080], abs=1e-6)


def test_empty_annotations_give_background():
    label = parse_label(json.dumps(label_doc("cow", 1, 1920, 1080, [])), 1)
    assert label.boxes == () and label.yolo_lines() == ""


def test_boxes_outside_are_clipped_and_zero_area_dropped():
    boxes = [[-3, 10, 50, 60],        # sticks out left: clipped
             [1900, 1000, 1923, 1082],  # sticks out right/bottom: clipped
             [10, 10, 10, 50],        # zero width: dropped
             [50, 60, 40, 70],        # inverted: dropped
             [2000, 10, 2100, 50],    # wholly outside: dropped
             [5, 5, 15, 15]]          # fine
    label = parse_label(json.dumps(label_doc("cow", 1, 1920, 1080, boxes)), 1)
    assert (label.clipped, label.dropped) == (2, 3)
    assert label.boxes == ((0, 10, 50, 60), (1900, 1000, 1920, 1080), (5, 5, 15, 15))
    for line in _lines(label):
        cx, cy, w, h = map(float, line[1:])
        assert 0 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 and cy + h / 2 <= 1 + 1e-6


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON"),
    ("[]", "<root> is not an object"),
    ('{"label_info": {}}', "missing field label_info.image"),
    ('{"label_info": {"image": {"height": 10}, "annotations": []}}',
     "missing field label_info.image.width"),
    ('{"label_info": {"image": {"width": 0, "height": 10}, "annotations": []}}',
     "label_info.image.width is not a positive integer"),
    ('{"label_info": {"image": {"width": 10, "height": 10}}}', "missing field label_info.annotations"),
    ('{"label_info": {"image": {"width": 10, "height": 10}, "annotations": [{"id": 1}]}}',
     "missing field label_info.annotations[0].bbox"),
    ('{"label_info": {"image": {"width": 10, "height": 10}, "annotations": [{"bbox": [1, 2, 3]}]}}',
     "label_info.annotations[0].bbox is not 4 numbers"),
    ('{"label_info": {"image": {"width": 10, "height": 10}, "annotations": [{"bbox": [1,2,"a",4]}]}}',
     "is not 4 numbers"),
])
def test_unusable_labels_name_the_field(text, message):
    with pytest.raises(LabelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_label(text, 1)


def test_jpeg_probe_reads_size_from_header(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(jpeg_bytes(128, 96))
    assert jpeg.probe(p) == jpeg.JpegInfo(128, 96, False)


def test_jpeg_probe_rejects_truncated_and_non_jpeg(tmp_path):
    data = jpeg_bytes(200, 100)
    p = tmp_path / "t.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(jpeg.ImageError, match="no EOI marker"):
        jpeg.probe(p)
    p.write_bytes(data[:40])
    with pytest.raises(jpeg.ImageError, match="truncated"):
        jpeg.probe(p)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(jpeg.ImageError, match="not a JPEG"):
        jpeg.probe(p)
    p.write_bytes(b"")
    with pytest.raises(jpeg.ImageError, match="empty"):
        jpeg.probe(p)
    with pytest.raises(jpeg.ImageError, match="cannot read"):
        jpeg.probe(tmp_path / "missing.jpg")


def test_jpeg_padding_after_eoi_is_readable():
    info = jpeg.probe_bytes(jpeg_bytes(32, 16) + b"\x00" * 10)
    assert info == jpeg.JpegInfo(32, 16, trailing=True)
