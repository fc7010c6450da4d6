"""Validate a YOLO detection data yaml the way Ultralytics will read it, but fast and strict.

Runs before every study: a broken dataset must fail in seconds with one clear line, not an hour
into the first trial. Only paths and label text are read (no image is opened): ~16k labels take
well under a second.

Resolution follows Ultralytics: ``path`` is the dataset root (default: the yaml's folder; a relative
one is tried against the working directory, as Ultralytics does, then against the yaml's folder
with a warning); ``train``/``val``/``test`` are
folders (searched recursively for images), ``*.txt`` image lists (``./`` lines relative to the
list) or lists of those; each image's label is the same path with the last ``/images/`` replaced by
``/labels/`` and a ``.txt`` suffix. A missing label file is a background image.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hpo import yamlio
from hpo.errors import HpoError, shown

#: Ultralytics' image suffixes.
IMG_FORMATS = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm",
                         "heic"})
SPLIT_KEYS = ("train", "val", "test")
_SMALL_VAL = 10  # below this a validation split picks best.pt by noise


@dataclass
class SplitSummary:
    images: int
    #: Images with a non-empty label file.
    labelled: int
    #: Images with an empty or missing label file (backgrounds).
    backgrounds: int
    #: Boxes per class id.
    boxes: list[int]
    #: Images holding at least one box of each class id.
    images_per_class: list[int]
    sources: list[str] = field(default_factory=list)


@dataclass
class DatasetSummary:
    """What :func:`check_dataset` found."""

    yaml: Path
    root: Path
    names: list[str]
    splits: dict[str, SplitSummary]
    warnings: list[str] = field(default_factory=list)

    @property
    def nc(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"yaml": str(self.yaml), "root": str(self.root), "nc": self.nc, "names": self.names,
                "splits": {k: asdict(v) for k, v in self.splits.items()},
                "warnings": self.warnings}


def _names(data: dict, where: Path) -> list[str]:
    names, nc = data.get("names"), data.get("nc")
    if names is None:
        if not isinstance(nc, int) or nc < 1:
            raise HpoError("needs 'names' (a list or an {id: name} map) or a positive 'nc'",
                           path=where, field="names")
        return [f"class{i}" for i in range(nc)]
    if isinstance(names, dict):
        keys = sorted(names, key=str)
        if not all(isinstance(k, int) for k in keys) or keys != list(range(len(keys))):
            raise HpoError("as a map, needs the keys 0..n-1", path=where, field="names")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise HpoError("must be a non-empty list or {id: name} map", path=where, field="names")
    names = [str(n) for n in names]
    if nc is not None and nc != len(names):
        raise HpoError(f"nc is {shown(nc)} but names has {len(names)} entries", path=where, field="nc")
    return names


def _root(data: dict, data_yaml: Path, warnings: list[str]) -> Path:
    raw = data.get("path")
    if raw in (None, ""):
        return data_yaml.parent
    p = Path(str(raw)).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, data_yaml.parent / p]
    for i, c in enumerate(candidates):
        if c.is_dir():
            if i == 1:
                warnings.append(f"path {raw!r} was found next to the yaml, but Ultralytics resolves "
                                "a relative path against the working directory: make it absolute")
            return c.resolve()
    raise HpoError(f"dataset root not found (tried {', '.join(map(str, candidates))})",
                   path=data_yaml, field="path")


def _images(spec: object, root: Path, data_yaml: Path, key: str) -> tuple[list[str], list[str]]:
    """Image paths of one split entry, and the sources they came from."""
    entries = spec if isinstance(spec, list) else [spec]
    files: list[str] = []
    sources: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise HpoError(f"expected a path or a list of paths, got {shown(entry)}", path=data_yaml,
                           field=key)
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else root / p
        sources.append(str(p))
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                files += [os.path.join(dirpath, f) for f in filenames
                          if f.rpartition(".")[-1].lower() in IMG_FORMATS]
        elif p.is_file() and p.suffix == ".txt":
            parent = str(p.parent) + os.sep
            lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines()]
            listed = [parent + x[2:] if x.startswith("./") else x for x in lines if x]
            missing = [x for x in listed if not os.path.isfile(x)]
            if missing:
                raise HpoError(f"{len(missing)} listed image(s) do not exist, first: {missing[0]}",
                               path=p)
            files += [x for x in listed if x.rpartition(".")[-1].lower() in IMG_FORMATS]
        elif p.is_file() and p.suffix.lstrip(".").lower() in IMG_FORMATS:
            files.append(str(p))
        else:
            raise HpoError(f"not found: {p} (expected an image folder, a .txt image list or an "
                           "image)", path=data_yaml, field=key)
    return sorted(files), sources


def _label_path(image: str) -> str:
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def _parse_label(text: str, nc: int) -> tuple[list[int], str | None]:
    """Class ids of the boxes in one label file, or the first problem (``line N: what``)."""
    classes = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
            return classes, f"line {n}: expected 'class cx cy w h' (or a polygon), got " \
                            f"{len(parts)} values"
        try:
            values = [float(v) for v in parts]
        except ValueError:
            return classes, f"line {n}: not a number in {line.strip()!r}"
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < nc:
            return classes, f"line {n}: class {parts[0]} is not in 0..{nc - 1}"
        coords = values[1:]
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in coords):
            return classes, f"line {n}: coordinates must be normalised to [0, 1]"
        if len(parts) == 5 and (coords[2] <= 0 or coords[3] <= 0):
            return classes, f"line {n}: box has no area"
        classes.append(int(cls))
    return classes, None


def check_dataset(data_yaml: Path) -> DatasetSummary:
    """Validate ``data_yaml`` and everything it points to; raise :class:`HpoError` if broken."""
    data_yaml = Path(data_yaml).expanduser().absolute()
    if not data_yaml.is_file():
        raise HpoError("data yaml not found", path=data_yaml)
    data = yamlio.load(data_yaml)
    if not isinstance(data, dict):
        raise HpoError("must be a mapping with train, val and names", path=data_yaml)
    if "validation" in data and "val" not in data:
        data["val"] = data.pop("validation")
    for key in ("train", "val"):
        if not data.get(key):
            raise HpoError("missing (a YOLO data yaml needs train and val)", path=data_yaml,
                           field=key)
    names = _names(data, data_yaml)
    warnings: list[str] = []
    root = _root(data, data_yaml, warnings)
    splits: dict[str, SplitSummary] = {}
    for key in SPLIT_KEYS:
        if not data.get(key):
            continue
        files, sources = _images(data[key], root, data_yaml, key)
        if not files:
            raise HpoError(f"no images found in {', '.join(sources)}", path=data_yaml, field=key)
        boxes = [0] * len(names)
        per_class = [0] * len(names)
        labelled = 0
        bad: list[str] = []
        for image in files:
            label = _label_path(image)
            try:
                with open(label, encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                bad.append(f"{label}: cannot read ({exc})")
                continue
            classes, problem = _parse_label(text, len(names))
            if problem:
                bad.append(f"{label}: {problem}")
                continue
            if classes:
                labelled += 1
                for c in classes:
                    boxes[c] += 1
                for c in set(classes):
                    per_class[c] += 1
        if bad:
            raise HpoError(f"{len(bad)} broken label file(s) in the {key} split; first: {bad[0]}",
                           path=data_yaml)
        split = SplitSummary(len(files), labelled, len(files) - labelled, boxes, per_class,
                             sources)
        splits[key] = split
        if labelled == 0:
            warnings.append(f"{key}: no image has a label (all {len(files)} are backgrounds)")
    val = splits["val"].images
    if val < _SMALL_VAL:
        warnings.append(f"val has only {val} image(s): validation metrics, and the best.pt they "
                        "pick, will be noise")
    for i, name in enumerate(names):
        if splits["train"].boxes[i] == 0:
            warnings.append(f"train has no box of class {i} ({name})")
    return DatasetSummary(data_yaml, root, names, splits, warnings)
