"""The AI Hub livestock (bbox subset) raw format, in one place.

Both the synthetic twin (:mod:`hpo.data.synth`) and the converter (:mod:`hpo.data.prepare`) read
their names, classes and box statistics from here, so the two can never drift apart.
"""

from __future__ import annotations

import re

#: Class names in YOLO class-id order: pig = 0, cow = 1 (the seed project's convention).
NAMES: tuple[str, ...] = ("pig", "cow")
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(NAMES)}

#: The four training zips and what they hold; their contents sit flat at the zip root.
ZIP_NAMES: dict[tuple[str, str], str] = {
    ("image", "cow"): "[원천]소_bbox.zip",
    ("label", "cow"): "[라벨]소_bbox.zip",
    ("image", "pig"): "[원천]돼지_bbox.zip",
    ("label", "pig"): "[라벨]돼지_bbox.zip",
}

#: ``livestock_{cow|pig}_bbox_NNNNNN.{jpg,json}``; the class comes from this name, never from
#: ``category_id`` (which does not encode cow/pig).
FILE_RE = re.compile(r"^(livestock_(cow|pig)_bbox_\d+)\.(jpg|jpeg|json)$", re.IGNORECASE)


def stem(animal: str, index: int) -> str:
    """The file stem of image ``index`` (1-based) of ``animal``."""
    return f"livestock_{animal}_bbox_{index:06d}"


def folder_name(kind: str, animal: str) -> str:
    """The folder a zip extracts to: its name without ``.zip``."""
    return ZIP_NAMES[(kind, animal)][: -len(".zip")]


# Box-count buckets of the contest's multilabel-stratified split: (label, lowest count).
_BUCKETS: dict[str, tuple[tuple[str, int], ...]] = {
    "cow": (("<4", 0), ("4-5", 4), (">=6", 6)),
    "pig": (("<8", 0), ("8-12", 8), (">=13", 13)),
}

#: Report/stratification columns in the published order.
BUCKET_COLUMNS: tuple[str, ...] = tuple(
    f"{animal} {label}" for animal in ("cow", "pig") for label, _ in _BUCKETS[animal]
)


def bucket(animal: str, boxes: int) -> str:
    """The box-count bucket column of an image of ``animal`` with ``boxes`` boxes."""
    chosen = _BUCKETS[animal][0][0]
    for label, low in _BUCKETS[animal]:
        if boxes >= low:
            chosen = label
    return f"{animal} {chosen}"


# Real per-class statistics of the AI Hub bbox data (16,455 images), which the twin reproduces.
#: Images per box count. Cow: the published histogram (three images without a box; 10-11 split
#: 12/5). Pig: "mostly 8-12", shaped to the published bucket totals (506 / 2749 / 1048) and about
#: 46k boxes.
BOX_COUNT_HIST: dict[str, dict[int, int]] = {
    "cow": {0: 3, 1: 1987, 2: 2408, 3: 2985, 4: 2099, 5: 1314, 6: 661, 7: 400, 8: 222, 9: 56,
            10: 12, 11: 5},
    "pig": {3: 30, 4: 50, 5: 80, 6: 136, 7: 210, 8: 420, 9: 520, 10: 600, 11: 640, 12: 569,
            13: 420, 14: 300, 15: 180, 16: 90, 17: 40, 18: 18},
}
#: Images per (width, height).
IMAGE_SIZES: dict[str, dict[tuple[int, int], int]] = {
    "cow": {(1920, 1080): 12152},
    "pig": {(1920, 1080): 3131, (1280, 960): 1172},
}
REAL_COUNTS: dict[str, int] = {"cow": 12152, "pig": 4303}
