"""File-system helpers: cheap image links and all-or-nothing replacement of generated outputs.

Generated data (a synthetic raw set, a prepared dataset) is first built in a hidden temp folder
inside the output folder, then swapped in entry by entry: first every old entry is moved aside,
then every new one is moved in (renames on one file system), so the output never holds a mix of
two runs. The output folder itself is never removed: the demo keeps its raw data inside it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from hpo.errors import HpoError


def link(src: str | Path, dst: str | Path) -> str:
    """Make ``dst`` the file ``src`` without copying it if possible; returns the method used.

    Hard link first (no extra space, survives moving the raw folder), then a symlink (across file
    systems), then a plain copy (file systems without links). A symlinked ``src`` is followed: the
    link goes to the real file.
    """
    if os.path.islink(src):  # os.link would link the symlink itself on Linux
        src = os.path.realpath(src)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        pass
    try:
        os.symlink(os.path.abspath(src), dst)
        return "symlink"
    except OSError:
        pass
    shutil.copyfile(src, dst)
    return "copy"


def link_within(src: str | Path, dst: str | Path) -> None:
    """Like :func:`link`, for two entries of one output tree that is moved after it is built.

    A symlink ``src`` is linked as it is (its target stays the same); a symlink made as the fallback
    is relative, so it survives moving the tree.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError:
        pass
    try:
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
        return
    except OSError:
        pass
    shutil.copyfile(src, dst)


def temp_dir(out: Path, kind: str) -> Path:
    """A fresh hidden build folder inside ``out`` (same file system, so the swap is renames)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".hpo-{kind}-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out / f".hpo-{kind}-tmp-{os.getpid()}"
    tmp.mkdir()
    return tmp


def check_replaceable(out: Path, entries: Iterable[str], marker: str, kind: str, what: str) -> None:
    """Refuse to overwrite entries of ``out`` that an earlier run of ours did not write."""
    if out.exists() and not out.is_dir():
        raise HpoError("exists and is not a folder", path=out)
    if not out.is_dir() or (out / marker).is_file() or any(out.glob(f".hpo-{kind}-*")):
        return
    foreign = [name for name in entries if os.path.lexists(out / name)]
    if foreign:
        raise HpoError(f"holds {foreign[0]!r} but no {marker} from an earlier `{what}`: refusing to "
                       "replace files this tool did not write (choose another output folder)",
                       path=out)


def swap_in(tmp: Path, out: Path, entries: Iterable[str], marker: str) -> None:
    """Replace ``entries`` of ``out`` by those built in ``tmp``; ``marker`` goes in last."""
    entries = [e for e in entries if e != marker] + [marker]
    old = tmp.with_name(tmp.name.replace("-tmp-", "-old-"))
    old.mkdir()
    for name in [marker] + entries[:-1]:  # the marker leaves first and comes back last
        if os.path.lexists(out / name):
            os.replace(out / name, old / name)
    for name in entries:
        if os.path.lexists(tmp / name):
            os.replace(tmp / name, out / name)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def discard(tmp: Path, created: Path | None = None) -> None:
    """Drop a failed build; also the output folder if this run created it and it is now empty."""
    shutil.rmtree(tmp, ignore_errors=True)
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass
