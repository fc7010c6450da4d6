"""Shared helpers and fixtures of the data tests (imported by tests/test_data_*.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hpo.data import aihub
from hpo.data.synth import generate

_CACHE: dict[tuple, Path] = {}


def jpeg_bytes(width: int, height: int, value: int = 120) -> bytes:
    """A real (decodable) JPEG of the given size."""
    import cv2

    img = np.full((height, width, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def label_doc(animal: str, index: int, width: int, height: int, boxes: list, *,
              category_id: int | None = None) -> dict:
    """An AI Hub label JSON document with corner-format boxes."""
    cat = category_id if category_id is not None else {"cow": 3, "pig": 1}[animal]
    return {"label_info": {
        "image": {"file_name": f"{aihub.stem(animal, index)}.jpg", "width": width, "height": height},
        "annotations": [{"id": i + 1, "category_id": cat, "bbox": list(b)}
                        for i, b in enumerate(boxes)],
        "categories": [{"id": cat, "name": animal}],
    }}


def write_pair(folder: Path, animal: str, index: int, width: int, height: int, boxes: list, *,
               image: bytes | None = None, label: str | bytes | None = None,
               category_id: int | None = None) -> tuple[Path, Path]:
    """Write livestock_<animal>_bbox_<index>.jpg/.json into ``folder`` (flat layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = aihub.stem(animal, index)
    jpg, js = folder / f"{stem}.jpg", folder / f"{stem}.json"
    jpg.write_bytes(image if image is not None else jpeg_bytes(width, height))
    if label is None:
        label = json.dumps(label_doc(animal, index, width, height, boxes, category_id=category_id))
    js.write_bytes(label.encode() if isinstance(label, str) else label)
    return jpg, js


def flat_set(folder: Path, cows: int = 8, pigs: int = 4, size: tuple[int, int] = (64, 36)) -> Path:
    """A small, clean, flat raw folder with one to three boxes per image."""
    w, h = size
    for animal, n in (("cow", cows), ("pig", pigs)):
        for i in range(1, n + 1):
            boxes = [[2 + 4 * k, 2 + 3 * k, 20 + 4 * k, 14 + 3 * k] for k in range(1 + i % 3)]
            write_pair(folder, animal, i, w, h, boxes)
    return folder


def twin(tmp_path_factory: pytest.TempPathFactory, **kw) -> Path:
    """A synthetic raw set, generated once per session per options; callers get a private copy."""
    key = tuple(sorted(kw.items()))
    if key not in _CACHE:
        base = tmp_path_factory.mktemp("twin")
        generate(base / "raw", **kw)
        _CACHE[key] = base / "raw"
    dst = tmp_path_factory.mktemp("raw") / "raw"
    shutil.copytree(_CACHE[key], dst)
    return dst


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> bytes), symlinks resolved."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
