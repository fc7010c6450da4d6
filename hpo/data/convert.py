"""AI Hub label JSON -> YOLO label lines.

A label file gives ``label_info.image.{width,height}`` and ``label_info.annotations[].bbox`` as
``[x1, y1, x2, y2]`` pixel corners. The YOLO line is ``cls cx cy w h`` normalised by the JSON size.
The class is passed in (it comes from the file name): ``category_id`` does not encode cow/pig.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


class LabelError(Exception):
    """The label file cannot be used; the message names the field and the fault."""


@dataclass(frozen=True)
class Label:
    cls: int
    width: int
    height: int
    #: Kept boxes as pixel corners (x1, y1, x2, y2), clipped to the image.
    boxes: tuple[tuple[float, float, float, float], ...]
    #: Boxes that stuck out of the image and were clipped to it.
    clipped: int = 0
    #: Boxes with no area left (zero-size, inverted, or wholly outside the image), dropped.
    dropped: int = 0

    def yolo_lines(self) -> str:
        """The YOLO label file text: one ``cls cx cy w h`` line per box (empty: background)."""
        w, h = self.width, self.height
        return "".join(
            f"{self.cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
            f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
            for x1, y1, x2, y2 in self.boxes
        )


def _field(obj: object, key: str, where: str) -> object:
    if not isinstance(obj, dict):
        raise LabelError(f"{where} is not an object")
    if key not in obj:
        raise LabelError(f"missing field {where}.{key}")
    return obj[key]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_label(data: bytes | str, cls: int) -> Label:
    """Parse one AI Hub label file for class ``cls``; raise :class:`LabelError` if unusable."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LabelError(f"invalid JSON ({exc})") from None
    info = _field(doc, "label_info", "<root>")
    image = _field(info, "image", "label_info")
    size = []
    for key in ("width", "height"):
        value = _field(image, key, "label_info.image")
        if not _number(value) or value <= 0 or value != int(value):
            raise LabelError(f"label_info.image.{key} is not a positive integer: {value!r}")
        size.append(int(value))
    width, height = size
    annotations = _field(info, "annotations", "label_info")
    if not isinstance(annotations, list):
        raise LabelError("label_info.annotations is not a list")
    boxes, clipped, dropped = [], 0, 0
    for i, ann in enumerate(annotations):
        bbox = _field(ann, "bbox", f"label_info.annotations[{i}]")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_number, bbox))):
            raise LabelError(f"label_info.annotations[{i}].bbox is not 4 numbers: {bbox!r}")
        x1, y1, x2, y2 = bbox
        cx1, cx2 = min(max(x1, 0), width), min(max(x2, 0), width)
        cy1, cy2 = min(max(y1, 0), height), min(max(y2, 0), height)
        if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
            dropped += 1
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            clipped += 1
        boxes.append((cx1, cy1, cx2, cy2))
    return Label(cls, width, height, tuple(boxes), clipped, dropped)
