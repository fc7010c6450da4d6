"""AI Hub raw data -> YOLO dataset: convert labels, split, link images, write yamls and a report.

Layout under OUT (every split gets its own ``images/<split>`` + ``labels/<split>`` folder of links,
so Ultralytics keeps one label cache per split, ``labels/<split>.cache``, instead of one shared
cache that every split would invalidate for the others)::

    images/{full,train,valid,mini}/<stem>.jpg   links to the raw images (full holds all)
    labels/{full,train,valid,mini}/<stem>.txt   YOLO labels ``cls cx cy w h`` (empty: background)
    train.yaml  mini.yaml  full.yaml            absolute paths, names [pig, cow]
    split_report.md  split_report.json          counts per split/bucket, everything skipped

Bad data is skipped and reported, never silently and never fatally (``strict`` turns it into an
error). Per image only the JSON is parsed and the JPEG header and tail are read: no decoding.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hpo.data import aihub, jpeg
from hpo.data.convert import Label, LabelError, parse_label
from hpo.data.fsutil import (check_replaceable, discard, link, link_within, swap_in,
                              temp_dir)
from hpo.data.progress import ProgressBar
from hpo.data.split_report import SPLITS, PrepareReport
from hpo.data.sources import Source, scan
from hpo.data.split import EXTRA_BINS, EXTRA_KINDS, Item, assign_folds
from hpo.errors import HpoError

MARKER = "split_report.json"
#: Everything prepare owns in OUT; nothing else there is touched.
OUTPUTS = ("images", "labels", "train.yaml", "mini.yaml", "full.yaml", "split_report.md", MARKER)
EXPECTED = ("the four AI Hub zips ([원천]/[라벨] 소_bbox.zip, 돼지_bbox.zip), their extracted "
            "folders, or a folder of livestock_{cow|pig}_bbox_NNNNNN.jpg/.json pairs")


@dataclass
class _Record:
    stem: str
    animal: str
    image: str  # file name under images/<split>/
    source: Source
    label: Label


def _check_options(folds: int, valid_fold: int, mini_folds: Sequence[int] | None,
                   stratify_extra: Sequence[str]) -> tuple[list[int], list[str]]:
    if folds < 2:
        raise HpoError(f"need at least 2 folds, got {folds}", field="--folds")
    if not 0 <= valid_fold < folds:
        raise HpoError(f"must be a fold index 0..{folds - 1}, got {valid_fold}",
                       field="--valid-fold")
    if mini_folds is None:
        mini = [k for k in range(folds) if k != valid_fold][:2]
    else:
        mini = sorted(set(mini_folds))
        if not mini:
            raise HpoError("needs at least one fold", field="--mini-folds")
        bad = [k for k in mini if not 0 <= k < folds]
        if bad:
            raise HpoError(f"fold {bad[0]} is not in 0..{folds - 1}", field="--mini-folds")
        if valid_fold in mini:
            raise HpoError(f"fold {valid_fold} is the validation fold; mini trains on other folds",
                           field="--mini-folds")
    extra = list(dict.fromkeys(stratify_extra))
    bad = [e for e in extra if e not in EXTRA_KINDS]
    if bad:
        raise HpoError(f"unknown label {bad[0]!r} (choose from {', '.join(EXTRA_KINDS)})",
                       field="--stratify-extra")
    return mini, extra


def prepare(raw: Path, out: Path, *, folds: int = 5, valid_fold: int = 4, seed: int = 42,
            mini_folds: Sequence[int] | None = None, stratify_extra: Sequence[str] = (),
            strict: bool = False, progress: bool = False) -> PrepareReport:
    """Convert and split the AI Hub raw data in ``raw`` into a YOLO dataset in ``out``.

    ``mini_folds`` defaults to the first two folds other than the validation fold (0 and 1).
    ``stratify_extra`` adds ``"ratio"`` and/or ``"size"`` labels (see :data:`EXTRA_BINS`).
    Replaces an earlier ``prepare`` output in ``out`` whole; other files there are left alone.
    """
    start = time.perf_counter()
    raw, out = Path(raw).expanduser().absolute(), Path(out).expanduser().absolute()
    mini, extra = _check_options(folds, valid_fold, mini_folds, stratify_extra)
    if not raw.exists():
        raise HpoError(f"raw data folder not found: expected {EXPECTED}", path=raw)
    if not raw.is_dir():
        raise HpoError(f"is not a folder: expected {EXPECTED}", path=raw)
    for name in ("images", "labels"):
        if raw == out / name or (out / name) in raw.parents:
            raise HpoError(f"the raw folder lies inside the output's {name}/ folder, which prepare "
                           "replaces", path=raw)
    check_replaceable(out, OUTPUTS, MARKER, "prepare", "hpo data prepare")
    created = not out.exists()

    inv = scan(raw, exclude=[out / name for name in OUTPUTS])  # raw may hold out (or be it)
    if not inv.pairs:
        other = f" (found {len(inv.unrecognised)} other jpg/json files)" if inv.unrecognised else ""
        raise HpoError(f"no AI Hub livestock files found{other}: expected {EXPECTED}", path=raw)

    options = {"folds": folds, "valid_fold": valid_fold, "seed": seed, "mini_folds": mini,
               "stratify_extra": extra, "strict": strict}
    skipped = [{"file": z, "reason": f"unreadable zip: {why}"} for z, why in inv.bad_zips]
    trailing: list[str] = []
    records: list[_Record] = []
    links: dict[str, int] = {}
    tmp = temp_dir(out, "prepare")
    try:
        full_images = tmp / "images" / "full"
        full_images.mkdir(parents=True)
        zips: dict[Path, zipfile.ZipFile] = {}

        def read(src: Source) -> bytes:
            if src.path is not None:
                return src.path.read_bytes()
            if src.zip not in zips:
                zips[src.zip] = zipfile.ZipFile(src.zip)
            return zips[src.zip].read(src.member)

        with ProgressBar(progress, len(inv.pairs), "reading") as advance:
            for stem in sorted(inv.pairs):
                advance()
                pair = inv.pairs[stem]
                if pair.image is None or pair.label is None:
                    src = pair.image or pair.label
                    why = "label without image" if pair.image is None else "image without label"
                    skipped.append({"file": src.display(raw), "reason": why})
                    continue
                try:
                    label = parse_label(read(pair.label), aihub.CLASS_ID[pair.animal])
                except LabelError as exc:
                    skipped.append({"file": pair.label.display(raw), "reason": str(exc)})
                    continue
                except (OSError, zipfile.BadZipFile) as exc:
                    skipped.append({"file": pair.label.display(raw),
                                    "reason": f"cannot read: {exc}"})
                    continue
                name = pair.image.name
                try:
                    if pair.image.path is not None:
                        info = jpeg.probe(pair.image.path)
                        data = None
                    else:
                        data = read(pair.image)
                        info = jpeg.probe_bytes(data)
                except (jpeg.ImageError, OSError, zipfile.BadZipFile) as exc:
                    skipped.append({"file": pair.image.display(raw), "reason": str(exc)})
                    continue
                if (info.width, info.height) != (label.width, label.height):
                    skipped.append({"file": pair.image.display(raw), "reason":
                                    f"image is {info.width}x{info.height} but its label says "
                                    f"{label.width}x{label.height}"})
                    continue
                if info.trailing:
                    trailing.append(pair.image.display(raw))
                if data is not None:  # from a zip: extracting is the only way in
                    (full_images / name).write_bytes(data)
                    links["extracted"] = links.get("extracted", 0) + 1
                records.append(_Record(stem, pair.animal, name, pair.image, label))
        for z in zips.values():
            z.close()

        clipped = [{"file": r.source.display(raw), "boxes": r.label.clipped}
                   for r in records if r.label.clipped]
        dropped = [{"file": r.source.display(raw), "boxes": r.label.dropped}
                   for r in records if r.label.dropped]
        report = PrepareReport(
            raw=raw, out=out, options=options, columns=list(aihub.BUCKET_COLUMNS), splits={},
            folds=[], skipped=skipped,
            clipped={"boxes": sum(c["boxes"] for c in clipped), "files": clipped},
            dropped={"boxes": sum(d["boxes"] for d in dropped), "files": dropped},
            duplicates=inv.duplicates, unrecognised=inv.unrecognised, trailing_data=trailing)
        if strict and report.problems:
            raise HpoError(_strict_message(report), path=raw)
        if len(records) < folds:
            raise HpoError(f"only {len(records)} usable image(s): a {folds}-fold split needs at "
                           "least one per fold", path=raw)

        items = [Item(r.animal, tuple((x2 - x1, y2 - y1) for x1, y1, x2, y2 in r.label.boxes),
                      (r.label.width, r.label.height)) for r in records]
        fold = assign_folds(items, folds=folds, seed=seed, extra=extra)
        members = {
            "full": np.ones(len(records), bool),
            "train": fold != valid_fold,
            "valid": fold == valid_fold,
            "mini": np.isin(fold, mini),
        }
        _write_files(tmp, records, members, links, progress)
        report.links = dict(sorted(links.items()))
        report.splits = {s: _counts([items[i] for i in np.flatnonzero(members[s])])
                         for s in SPLITS}
        report.folds = [_counts([items[i] for i in np.flatnonzero(fold == k)])
                        for k in range(folds)]
        if extra:
            bins = [label for kind in extra for label, _ in EXTRA_BINS[kind]]
            labels = [[item.extra(kind) for kind in extra] for item in items]
            report.extra = {}
            for s in SPLITS:
                seen = Counter(b for i in np.flatnonzero(members[s]) for b in labels[i])
                report.extra[s] = {b: seen[b] for b in bins}
        for name, train in (("train", "train"), ("mini", "mini"), ("full", "full")):
            _write_yaml(tmp / f"{name}.yaml", out, train, report)
        (tmp / "split_report.md").write_text(report.markdown(), encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
        swap_in(tmp, out, OUTPUTS, MARKER)
    except BaseException:
        discard(tmp, out if created else None)
        raise
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _write_files(tmp: Path, records: list[_Record], members: dict[str, np.ndarray],
                 links: dict[str, int], progress: bool) -> None:
    """Labels into labels/full, raw images linked into images/full, then each split linked."""
    # Plain string paths: this loop runs ~60k times, and pathlib would cost more than the links.
    images, labels = os.path.join(tmp, "images"), os.path.join(tmp, "labels")
    for split in members:
        os.makedirs(os.path.join(images, split), exist_ok=True)
        os.makedirs(os.path.join(labels, split), exist_ok=True)
    full_images, full_labels = os.path.join(images, "full"), os.path.join(labels, "full")
    total = sum(int(m.sum()) for m in members.values())
    with ProgressBar(progress, total, "linking") as advance:
        for r in records:
            with open(os.path.join(full_labels, f"{r.stem}.txt"), "w") as f:
                f.write(r.label.yolo_lines())
            if r.source.path is not None:
                how = link(r.source.path, os.path.join(full_images, r.image))
                links[how] = links.get(how, 0) + 1
        advance(len(records))
        for split, member in members.items():
            if split == "full":
                continue
            split_images, split_labels = os.path.join(images, split), os.path.join(labels, split)
            for i in np.flatnonzero(member):
                r = records[i]
                link_within(os.path.join(full_images, r.image),
                            os.path.join(split_images, r.image))
                label = f"{r.stem}.txt"
                link_within(os.path.join(full_labels, label), os.path.join(split_labels, label))
            advance(int(member.sum()))


def _counts(items: list[Item]) -> dict:
    buckets = dict.fromkeys(aihub.BUCKET_COLUMNS, 0)
    classes = {name: {"images": 0, "boxes": 0} for name in aihub.NAMES}
    for item in items:
        buckets[item.bucket] += 1
        classes[item.animal]["images"] += 1
        classes[item.animal]["boxes"] += len(item.boxes)
    return {"images": len(items), "boxes": sum(c["boxes"] for c in classes.values()),
            "buckets": buckets, "classes": classes}


def _write_yaml(path: Path, out: Path, train: str, report: PrepareReport) -> None:
    o = report.options
    head = (f"# Written by `hpo data prepare` ({o['folds']}-fold split, seed {o['seed']}, "
            f"validation fold {o['valid_fold']}): {report.splits[train]['images']} train / "
            f"{report.splits['valid']['images']} val images.\n"
            "# Re-run prepare rather than editing: it replaces this file.\n")
    body = {"path": str(out), "train": str(out / "images" / train),
            "val": str(out / "images" / "valid"), "nc": len(aihub.NAMES),
            "names": list(aihub.NAMES)}
    path.write_text(head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True,
                                          default_flow_style=None), encoding="utf-8")


def _strict_message(report: PrepareReport) -> str:
    parts = [(len(report.skipped), "file(s) skipped"), (report.clipped["boxes"], "box(es) clipped"),
             (report.dropped["boxes"], "zero-area box(es) dropped"),
             (len(report.duplicates), "duplicate file(s)")]
    summary = ", ".join(f"{n} {what}" for n, what in parts if n)
    if report.skipped:
        first = f"{report.skipped[0]['file']}: {report.skipped[0]['reason']}"
    elif report.clipped["files"]:
        first = f"{report.clipped['files'][0]['file']}: box outside the image"
    elif report.dropped["files"]:
        first = f"{report.dropped['files'][0]['file']}: zero-area box"
    else:
        first = f"{report.duplicates[0]}: duplicate"
    return f"--strict: the raw data has problems: {summary}; first: {first}"
