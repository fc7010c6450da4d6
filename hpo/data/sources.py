"""Find the AI Hub files in a raw folder: the four zips, their extracted folders, or a flat folder.

Every ``livestock_{cow|pig}_bbox_NNNNNN.{jpg,json}`` found anywhere under the folder (or inside a
zip there) is indexed by its stem, so it does not matter how the user unpacked the download.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hpo.data import aihub


@dataclass(frozen=True)
class Source:
    """One file: on disk (``path``) or inside a zip (``zip`` + ``member``)."""

    name: str
    path: Path | None = None
    zip: Path | None = None
    member: str | None = None

    def display(self, root: Path) -> str:
        """The file as the report shows it, relative to the raw folder."""
        if self.path is not None:
            return _rel(self.path, root)
        return f"{_rel(self.zip, root)}:{self.member}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass
class Pair:
    animal: str
    image: Source | None = None
    label: Source | None = None


@dataclass
class Inventory:
    pairs: dict[str, Pair] = field(default_factory=dict)
    #: Files seen twice (e.g. both a zip and its extracted folder): the first one is used.
    duplicates: list[str] = field(default_factory=list)
    #: jpg/json files whose names are not AI Hub livestock names.
    unrecognised: list[str] = field(default_factory=list)
    #: ``(zip, reason)`` for zips that cannot be opened.
    bad_zips: list[tuple[str, str]] = field(default_factory=list)
    zips: int = 0
    folders: int = 0

    def add(self, source: Source, root: Path) -> None:
        match = aihub.FILE_RE.match(source.name)
        if not match:
            if source.name.lower().endswith((".jpg", ".jpeg", ".json")):
                self.unrecognised.append(source.display(root))
            return
        stem, animal, ext = match.group(1), match.group(2).lower(), match.group(3).lower()
        pair = self.pairs.setdefault(stem, Pair(animal))
        slot = "label" if ext == "json" else "image"
        if getattr(pair, slot) is not None:
            self.duplicates.append(source.display(root))
        else:
            setattr(pair, slot, source)


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def scan(raw: Path, exclude: Iterable[Path] = ()) -> Inventory:
    """Index every AI Hub file under ``raw``; plain files win over zip members of the same name."""
    exclude = {os.path.normpath(p) for p in exclude}
    inv = Inventory()
    zips: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(raw):
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d)
                             and os.path.normpath(os.path.join(dirpath, d)) not in exclude)
        found = False
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith(".") or os.path.normpath(path) in exclude:
                continue
            if name.lower().endswith(".zip"):
                zips.append(path)
            else:
                inv.add(Source(name, path=path), raw)
                found |= bool(aihub.FILE_RE.match(name))
        inv.folders += found
    for path in zips:
        try:
            with zipfile.ZipFile(path) as z:
                members = [i for i in z.infolist() if not i.is_dir()]
        except (OSError, zipfile.BadZipFile) as exc:
            inv.bad_zips.append((_rel(path, raw), str(exc) or type(exc).__name__))
            continue
        inv.zips += 1
        for info in sorted(members, key=lambda i: i.filename):
            base = info.filename.rsplit("/", 1)[-1]
            if base.startswith(".") or info.filename.startswith("__MACOSX/"):
                continue
            inv.add(Source(base, zip=path, member=info.filename), raw)
    return inv
