"""Can we write there? Checked before a command creates anything, so a bad path is one error line.

A launch whose runs folder sits on a read-only mount used to create the study and then die with a
traceback in ``mkdir``, leaving a study behind that had never run. Every folder a command will write
to is checked here first, from the closest folder that already exists (nothing is created).
"""

from __future__ import annotations

import os
from pathlib import Path

from hpo.errors import HpoError


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all: a killed command never leaves half a file that a rerun would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or "/")


def why_not_writable(folder: Path) -> str | None:
    """Why ``folder`` (existing or to be created) cannot be written, or None if it can."""
    folder = Path(folder).expanduser().absolute()
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder" if ancestor != folder else "not a folder"
    if os.access(ancestor, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    where = "" if ancestor == folder else f" ({ancestor})"
    return f"read-only file system{where}" if read_only else f"permission denied{where}"


def check_writable_dir(folder: Path, field: str | None = None) -> None:
    """Raise a one-line :class:`HpoError` naming ``folder`` if it cannot be created or written."""
    reason = why_not_writable(folder)
    if reason is not None:
        raise HpoError(f"cannot write here: {reason}", path=Path(folder).expanduser().absolute(), field=field)
