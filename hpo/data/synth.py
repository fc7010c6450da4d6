"""A synthetic twin of the AI Hub livestock data: same layout, names, JSON and statistics.

The real data cannot be downloaded here, so the tool ships a generator that writes raw data the
converter cannot tell apart from the real thing: the four folders (or zips) with their Korean
names, ``livestock_{cow|pig}_bbox_NNNNNN.jpg/.json`` pairs, corner-format boxes, per-class box-count
distributions and image sizes of the real set, and its quirks (images without boxes, boxes a few
pixels outside the image, ``category_id`` values that are not the class, and on request truncated
JPEGs and malformed JSON).

The "animals" are drawn to be learnable by a small YOLO at 128 px: cows are elongated, boxy,
black-and-white (or brown) and patched; pigs are round, smooth and pink; both on a varied farm-floor
background. Every image is drawn from its own seeded generator, so the output does not depend on
how the work is spread over processes.

A *style* changes the look, not the format or the statistics: ``farm`` (the default, described
above); ``pasture``, an outdoor twin with grass and dirt backgrounds, Angus / red / Holstein
cows, darker spotted pigs and smaller animals; ``night``, the farm scene of the same seed as a
night-time infrared CCTV frame (grey, low contrast, noisy, vignetted). Pretraining on one style and
fine-tuning on another gives a domain shift, our offline stand-in for COCO-pretrained weights
(``bench/pretrain.py``).
"""

from __future__ import annotations

import builtins
import json
import math
import os
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpo.data import aihub
from hpo.data.fsutil import check_replaceable, discard, swap_in, temp_dir
from hpo.data.progress import ProgressBar
from hpo.errors import HpoError

#: Written last into OUT; lets a later run replace what this one wrote.
MARKER = ".hpo-synth.json"
CORRUPT_KINDS = ("truncated_jpg", "invalid_json", "missing_field")
_ZIP_DATE = (2021, 7, 1, 0, 0, 0)  # fixed, so zips are byte-identical across runs
_ANIMAL_CODE = {"pig": 0, "cow": 1}
# category_id families seen in the raw labels: none of them is the YOLO class id.
_CATEGORY_IDS = ({"cow": 3, "pig": 1}, {"cow": 2, "pig": 4})
_KOREAN = {"cow": "소", "pig": "돼지"}
_MIN_SIDE = 16
#: Looks the twin can be drawn in; ``farm`` is the original, byte-identical for a given seed.
STYLES = ("farm", "pasture", "night")
DEFAULT_STYLE = "farm"


@dataclass
class SynthSummary:
    """What :func:`generate` wrote."""

    out: Path
    images: dict[str, int]
    boxes: dict[str, int]
    #: Images per nominal size "WxH" per animal (the written files are scaled by ``scale``).
    sizes: dict[str, dict[str, int]]
    empty_images: int
    outside_boxes: int
    #: ``{"file": ..., "kind": ...}`` for every file damaged on purpose (``corrupt``).
    corrupt: list[dict[str, str]] = field(default_factory=list)
    zip: bool = False
    scale: float = 1.0
    seed: int = 0
    seconds: float = 0.0
    style: str = DEFAULT_STYLE

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        if d["style"] == DEFAULT_STYLE:  # keeps the default twin's marker (and --json) as before
            del d["style"]
        return d


@dataclass(frozen=True)
class _Spec:
    animal: str
    index: int
    width: int
    height: int
    boxes: int
    family: int
    corrupt: str | None


def _allocate(hist: dict, n: int, rng: np.random.Generator) -> list:
    """``n`` values in the proportions of ``hist`` (largest remainder), in random order."""
    if n == 0:
        return []
    keys = list(hist)
    total = sum(hist.values())
    quotas = [n * hist[k] / total for k in keys]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(keys)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    values = [k for k, c in zip(keys, counts) for _ in range(c)]
    return [values[i] for i in rng.permutation(n)]


def _plan(cows: int, pigs: int, seed: int, corrupt: int) -> list[_Spec]:
    rng = np.random.default_rng([seed, 7])
    specs = []
    for animal, n in (("cow", cows), ("pig", pigs)):
        counts = _allocate(aihub.BOX_COUNT_HIST[animal], n, rng)
        if animal == "cow" and n >= 20 and 0 not in counts and 1 in counts:
            counts[counts.index(1)] = 0  # the real set has a few images without a box
        sizes = _allocate(aihub.IMAGE_SIZES[animal], n, rng)
        families = (rng.random(n) < 0.15).astype(int)
        specs += [_Spec(animal, i + 1, w, h, int(c), int(f), None)
                  for i, (c, (w, h), f) in enumerate(zip(counts, sizes, families))]
    if corrupt:
        picks = sorted(rng.choice(len(specs), size=corrupt, replace=False).tolist())
        for j, i in enumerate(picks):
            s = specs[i]
            specs[i] = _Spec(s.animal, s.index, s.width, s.height, s.boxes, s.family,
                             CORRUPT_KINDS[j % len(CORRUPT_KINDS)])
    return specs


# ---------------------------------------------------------------------------------------------
# Drawing. Colours are BGR (OpenCV).

_FLOORS = np.array([(150, 150, 145), (60, 90, 120), (90, 165, 195), (60, 115, 70),
                    (55, 60, 66), (125, 112, 100), (100, 130, 140)], dtype=np.float32)
# Pasture: lush and dry grass, dirt, mud, a grey sky band; no concrete pens.
_PASTURE = np.array([(40, 130, 55), (30, 100, 45), (70, 160, 150), (55, 150, 120),
                     (45, 80, 105), (35, 60, 75), (150, 140, 125)], dtype=np.float32)
#: Per style: background palette, box size factor, background grain (noise sigma).
_LOOK = {"farm": (_FLOORS, 1.0, 4.0), "pasture": (_PASTURE, 0.7, 9.0)}


def _background(rng: np.random.Generator, w: int, h: int, floors: np.ndarray = _FLOORS,
                grain: float = 4.0) -> np.ndarray:
    import cv2

    # Built at quarter resolution (gradient, stains, coarse noise), then upscaled: cheap at 1080p.
    sw, sh = max(8, w // 4), max(8, h // 4)
    c1, c2 = (floors[rng.choice(len(floors), 2, replace=False)]
              + rng.uniform(-20, 20, (2, 3))).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    t = (xx / sw - 0.5) * math.cos(angle) + (yy / sh - 0.5) * math.sin(angle) + 0.5
    small = c1 + (c2 - c1) * np.clip(t, 0, 1)[..., None]
    coarse = cv2.resize(rng.normal(0, 14, (max(2, sh // 6), max(2, sw // 6), 1)).astype(np.float32),
                        (sw, sh), interpolation=cv2.INTER_CUBIC)
    small += coarse[..., None] if coarse.ndim == 2 else coarse
    for _ in range(rng.integers(2, 7)):  # stains, straw heaps, puddles
        colour = (floors[rng.integers(len(floors))] + rng.uniform(-15, 15, 3)).tolist()
        centre = (int(rng.uniform(0, sw)), int(rng.uniform(0, sh)))
        axes = (int(rng.uniform(0.05, 0.25) * sw) + 1, int(rng.uniform(0.05, 0.25) * sh) + 1)
        overlay = small.copy()
        cv2.ellipse(overlay, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        small = cv2.addWeighted(overlay, 0.5, small, 0.5, 0)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # Fences and stall dividers: straight bars across the pen.
    for _ in range(rng.integers(0, 4)):
        colour = (floors[rng.integers(len(floors))] * rng.uniform(0.5, 1.3)).tolist()
        thick = max(1, int(rng.uniform(0.006, 0.02) * w))
        if rng.random() < 0.5:
            x0, x1 = rng.uniform(0, w, 2)
            cv2.line(img, (int(x0), 0), (int(x1), h), colour, thick, cv2.LINE_AA)
        else:
            y0, y1 = rng.uniform(0, h, 2)
            cv2.line(img, (0, int(y0)), (w, int(y1)), colour, thick, cv2.LINE_AA)
    img += rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    return img


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, colour, angle=0.0):
    import cv2

    s = 16  # 4 bits of sub-pixel precision
    cv2.ellipse(img, (round(cx * s), round(cy * s)), (max(1, round(ax * s)), max(1, round(ay * s))),
                angle, 0, 360, colour, -1, cv2.LINE_AA, 4)


def _cow(rng: np.random.Generator, L: int, S: int,
         style: str = DEFAULT_STYLE) -> tuple[np.ndarray, np.ndarray]:
    """A cow seen from above, facing right, filling an L x S box: boxy, patched."""
    import cv2

    if style == "pasture":  # mostly solid coats: black Angus, red, a few Holsteins
        coat = rng.random()
        if coat < 0.45:
            body = np.array([30, 30, 34]) + rng.uniform(-8, 15, 3)
            patch = body * 1.4
        elif coat < 0.8:
            body = np.array([35, 55, 120]) + rng.uniform(-15, 15, 3)
            patch = body * 0.7
        else:
            body = np.array([215, 220, 225]) + rng.uniform(-20, 10, 3)
            patch = np.array([40, 40, 45]) + rng.uniform(0, 20, 3)
    elif rng.random() < 0.7:  # Holstein: white with black patches
        body = np.array([232, 234, 236]) + rng.uniform(-15, 10, 3)
        patch = np.array([28, 28, 30]) + rng.uniform(0, 20, 3)
    else:  # brown with white patches
        body = np.array([40, 75, 140]) + rng.uniform(-15, 15, 3)
        patch = np.array([225, 228, 230]) + rng.uniform(-15, 10, 3)
    canvas = np.zeros((S, L, 3), np.float32)
    mask = np.zeros((S, L), np.float32)
    r = 0.3 * S  # rounded corners of the trunk
    for m, c in ((mask, 1.0), (canvas, body.tolist())):
        cv2.rectangle(m, (round(r), 0), (round(0.78 * L - r), S - 1), c, -1)
        cv2.rectangle(m, (0, round(r)), (round(0.78 * L), round(S - 1 - r)), c, -1)
        for cx in (r, 0.78 * L - r):
            for cy in (r, S - 1 - r):
                _ellipse(m, cx, cy, r, r, c)
    for _ in range(rng.integers(3, 8)):
        _ellipse(canvas, rng.uniform(0.05, 0.75) * L, rng.uniform(0, 1) * S,
                 rng.uniform(0.06, 0.18) * L, rng.uniform(0.12, 0.35) * S, patch.tolist(),
                 float(rng.uniform(0, 180)))
    head = (patch if rng.random() < 0.5 else body * 0.8).tolist()
    for m, c in ((mask, 1.0), (canvas, head)):
        _ellipse(m, 0.86 * L, 0.5 * S, 0.14 * L, 0.28 * S, c)
        _ellipse(m, 0.80 * L, 0.2 * S, 0.05 * L, 0.14 * S, c, 30.0)  # ears
        _ellipse(m, 0.80 * L, 0.8 * S, 0.05 * L, 0.14 * S, c, -30.0)
    canvas += rng.normal(0, 6, (S, L, 1)).astype(np.float32)  # hide texture
    return canvas, mask


def _pig(rng: np.random.Generator, L: int, S: int,
         style: str = DEFAULT_STYLE) -> tuple[np.ndarray, np.ndarray]:
    """A pig seen from above, facing right, filling an L x S box: round, smooth, pink."""
    if style == "pasture":  # outdoor breeds: tan to dusky pink, muddier
        skin = np.array([120, 150, 200]) * rng.uniform(0.75, 1.0) + rng.uniform(-10, 10, 3)
    else:
        skin = np.array([178, 184, 240]) * rng.uniform(0.85, 1.04) + rng.uniform(-8, 8, 3)
    dark = skin * np.array([0.8, 0.75, 0.85])
    canvas = np.zeros((S, L, 3), np.float32)
    mask = np.zeros((S, L), np.float32)
    for m, c in ((mask, 1.0), (canvas, skin.tolist())):
        _ellipse(m, 0.44 * L, 0.5 * S, 0.44 * L, 0.5 * S, c)
        _ellipse(m, 0.83 * L, 0.5 * S, 0.15 * L, 0.34 * S, c)
        _ellipse(m, 0.955 * L, 0.5 * S, 0.045 * L, 0.15 * S, c)
    _ellipse(canvas, 0.955 * L, 0.5 * S, 0.045 * L, 0.15 * S, dark.tolist())  # snout
    for cy in (0.22, 0.78):  # ears
        _ellipse(canvas, 0.74 * L, cy * S, 0.06 * L, 0.12 * S, dark.tolist())
    # Smooth shading: lighter along the spine, darker at the flanks.
    yy = np.linspace(-1, 1, S, dtype=np.float32)[:, None, None]
    canvas *= 1.08 - 0.22 * yy**2
    if style == "pasture":  # dark spots (Gloucester Old Spot, Berkshire crosses)
        for _ in range(rng.integers(0, 5)):
            _ellipse(canvas, rng.uniform(0.1, 0.7) * L, rng.uniform(0.1, 0.9) * S,
                     rng.uniform(0.05, 0.12) * L, rng.uniform(0.08, 0.2) * S,
                     (skin * 0.35).tolist(), float(rng.uniform(0, 180)))
    return canvas, mask


def _place(rng: np.random.Generator, animal: str, n: int, w: int, h: int, size: float = 1.0):
    """``n`` boxes (x1, y1, x2, y2, horizontal, flipped) with little overlap."""
    g = math.sqrt(w * h) * size
    if animal == "cow":
        lo, hi, aspect, crowd = 0.24, 0.40, (1.6, 2.1), min(1.0, math.sqrt(4 / max(n, 1)))
    else:
        lo, hi, aspect, crowd = 0.20, 0.32, (1.25, 1.55), min(1.0, math.sqrt(10 / max(n, 1)))
    boxes: list[tuple[int, int, int, int, bool, bool]] = []
    for _ in range(n):
        shrink = 1.0
        for attempt in range(60):
            if attempt and attempt % 15 == 0:
                shrink *= 0.85
            L = max(3, round(g * rng.uniform(lo, hi) * crowd * shrink))
            S = max(2, round(L / rng.uniform(*aspect)))
            horizontal = rng.random() < 0.65
            bw, bh = (L, S) if horizontal else (S, L)
            bw, bh = min(bw, w), min(bh, h)
            x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = (x1, y1, x1 + bw, y1 + bh)
            if all(_overlap_ok(box, b[:4]) for b in boxes) or attempt == 59:
                break
        boxes.append((*box, horizontal, bool(rng.random() < 0.5)))
    return boxes


def _overlap_ok(a, b) -> bool:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return True
    inter = iw * ih
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / small < 0.2


def _infrared(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A night-time IR CCTV frame of ``img``: grey, dim, low contrast, sensor noise, vignette."""
    h, w = img.shape[:2]
    # IR reflectance: skin and light coats bright, colour gone (weights unlike the eye's).
    grey = img[..., 0] * 0.2 + img[..., 1] * 0.3 + img[..., 2] * 0.5
    mean = float(grey.mean())
    grey = mean + (grey - mean) * rng.uniform(0.45, 0.7)  # flat IR illumination
    grey = grey * rng.uniform(0.55, 0.85) + rng.uniform(10, 30)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
    grey = grey * (1 - 0.55 * r2) + rng.normal(0, 7, (h, w))  # vignette of the IR lamp, noise
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def _render(spec: _Spec, scale: float, seed: int,
            style: str = DEFAULT_STYLE) -> tuple[bytes, bytes, int]:
    """JPEG bytes, label JSON bytes and the number of boxes written outside the image."""
    import cv2

    key = [seed, _ANIMAL_CODE[spec.animal], spec.index]
    scene = DEFAULT_STYLE if style == "night" else style  # night: the farm scene, filmed in IR
    if scene != DEFAULT_STYLE:  # another look also gets other layouts for the same seed
        key.append(STYLES.index(scene))
    rng = np.random.default_rng(key)
    floors, size, grain = _LOOK[scene]
    w, h = max(1, round(spec.width * scale)), max(1, round(spec.height * scale))
    img = _background(rng, w, h, floors, grain)
    draw = _cow if spec.animal == "cow" else _pig
    annotations, outside = [], 0
    cat = _CATEGORY_IDS[spec.family][spec.animal]
    for k, (x1, y1, x2, y2, horizontal, flipped) in enumerate(_place(rng, spec.animal, spec.boxes,
                                                                     w, h, size)):
        bw, bh = x2 - x1, y2 - y1
        canvas, mask = draw(rng, *((bw, bh) if horizontal else (bh, bw)), scene)
        if not horizontal:
            canvas, mask = np.rot90(canvas), np.rot90(mask)
        if flipped:
            canvas, mask = canvas[::-1, ::-1], mask[::-1, ::-1]
        region = img[y1:y2, x1:x2]
        a = mask[..., None]
        region[:] = region * (1 - a) + canvas * a
        bbox = [x1, y1, x2, y2]
        # Annotators' boxes sometimes stick out a few pixels where an animal meets the border.
        if rng.random() < 0.015:
            side = int(rng.integers(4))
            bbox[side] = -int(rng.integers(1, 4)) if side < 2 else (w, h)[side - 2] + int(
                rng.integers(1, 4))
            outside += 1
        annotations.append({"id": k + 1, "image_id": spec.index, "category_id": cat,
                            "bbox": bbox, "area": bw * bh, "iscrowd": 0})
    if style == "night":
        img = _infrared(np.random.default_rng([*key, 99]), img)
    ok, jpg = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    jpg = jpg.tobytes()
    name = aihub.stem(spec.animal, spec.index)
    doc = {"label_info": {
        "image": {"id": spec.index, "file_name": f"{name}.jpg", "width": w, "height": h},
        "annotations": annotations,
        "categories": [{"id": cat, "name": _KOREAN[spec.animal], "supercategory": "livestock"}],
    }}
    if spec.corrupt == "missing_field":
        del doc["label_info"]["image"]["width"]
    text = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    if spec.corrupt == "invalid_json":
        text = text[: len(text) // 2]
    if spec.corrupt == "truncated_jpg":
        jpg = jpg[: int(len(jpg) * rng.uniform(0.3, 0.8))]
    return jpg, text, outside


def _work(args: tuple) -> tuple[bytes | None, bytes | None, int]:
    """Pool task: render one image; write it under ``folders`` or hand the bytes back."""
    spec, scale, seed, folders, style = args
    jpg, text, outside = _render(spec, scale, seed, style)
    if folders is None:
        return jpg, text, outside
    name = aihub.stem(spec.animal, spec.index)
    Path(folders[("image", spec.animal)], f"{name}.jpg").write_bytes(jpg)
    Path(folders[("label", spec.animal)], f"{name}.json").write_bytes(text)
    return None, None, outside


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run(tasks: list, workers: int) -> Iterator[tuple]:
    if workers <= 1 or len(tasks) < 256:
        _init_worker()
        yield from map(_work, tasks)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        yield from pool.map(_work, tasks, chunksize=32)


def generate(out: Path, *, cows: int = aihub.REAL_COUNTS["cow"],
             pigs: int = aihub.REAL_COUNTS["pig"], scale: float = 1.0, seed: int = 0,
             corrupt: int = 0, zip: bool = False, workers: int | None = None,
             progress: bool = False, style: str = DEFAULT_STYLE) -> SynthSummary:
    """Write a synthetic AI Hub raw set into ``out``; returns what was written.

    ``out`` gets the four extracted folders (or, with ``zip``, the four zips) and a hidden marker.
    An earlier twin in ``out`` is replaced whole; other files there are left alone.
    """
    start = time.perf_counter()
    out = Path(out).expanduser().absolute()
    if cows < 0 or pigs < 0 or cows + pigs == 0:
        raise HpoError(f"need at least one image (got {cows} cows, {pigs} pigs)",
                       field="--cows/--pigs")
    if not 0 < scale <= 1:
        raise HpoError(f"must be in (0, 1], got {scale}", field="--scale")
    small = min(min(s) for sizes in aihub.IMAGE_SIZES.values() for s in sizes)
    if round(small * scale) < _MIN_SIDE:
        raise HpoError(f"{scale} makes {round(small * scale)} px images; the smallest usable scale "
                       f"is {math.ceil(_MIN_SIDE / small * 1000) / 1000}", field="--scale")
    if style not in STYLES:
        raise HpoError(f"unknown style {style!r} (choose from {', '.join(STYLES)})", field="--style")
    if not 0 <= corrupt <= cows + pigs:
        raise HpoError(f"must be between 0 and the number of images, got {corrupt}",
                       field="--corrupt")
    entries = [aihub.ZIP_NAMES[k] for k in aihub.ZIP_NAMES]
    entries += [aihub.folder_name(*k) for k in aihub.ZIP_NAMES]
    check_replaceable(out, entries, MARKER, "synth", "hpo data synth")
    specs = _plan(cows, pigs, seed, corrupt)
    created = not out.exists()
    tmp = temp_dir(out, "synth")
    try:
        folders = None
        if not zip:
            folders = {k: tmp / aihub.folder_name(*k) for k in aihub.ZIP_NAMES}
            for f in folders.values():
                f.mkdir()
        tasks = [(s, scale, seed, folders, style) for s in specs]
        zips = {}
        if zip:
            zips = {k: zipfile.ZipFile(tmp / name, "w") for k, name in aihub.ZIP_NAMES.items()}
        outside = 0
        with ProgressBar(progress, len(tasks), "synth") as advance:
            results = _run(tasks, workers or os.cpu_count() or 1)
            for spec, (jpg, text, n_out) in builtins.zip(specs, results):
                outside += n_out
                if zips:
                    name = aihub.stem(spec.animal, spec.index)
                    _zip_write(zips[("image", spec.animal)], f"{name}.jpg", jpg, zipfile.ZIP_STORED)
                    _zip_write(zips[("label", spec.animal)], f"{name}.json", text,
                               zipfile.ZIP_DEFLATED)
                advance()
        for z in zips.values():
            z.close()
        summary = SynthSummary(
            out=out,
            images={"cow": cows, "pig": pigs},
            boxes={a: sum(s.boxes for s in specs if s.animal == a) for a in ("cow", "pig")},
            sizes={a: {f"{w}x{h}": sum(1 for s in specs if s.animal == a and (s.width, s.height)
                                       == (w, h)) for (w, h) in aihub.IMAGE_SIZES[a]}
                   for a in ("cow", "pig")},
            empty_images=sum(1 for s in specs if s.boxes == 0),
            outside_boxes=outside,
            corrupt=[{"file": aihub.stem(s.animal, s.index)
                      + (".jpg" if s.corrupt == "truncated_jpg" else ".json"), "kind": s.corrupt}
                     for s in specs if s.corrupt],
            zip=zip, scale=scale, seed=seed, style=style,
        )
        marker = summary.to_dict()
        marker.pop("out")
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, ensure_ascii=False) + "\n")
        swap_in(tmp, out, entries, MARKER)
    except BaseException:
        discard(tmp, out if created else None)
        raise
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary


def _zip_write(z: zipfile.ZipFile, name: str, data: bytes, method: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    z.writestr(info, data)

