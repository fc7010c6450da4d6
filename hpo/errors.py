"""User-facing errors.

Every fault in user input (a study file, a data folder, a storage URL) is raised as an
:class:`HpoError` where it is detected. The CLI turns it into one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class HpoError(Exception):
    """A user-facing error: one line naming the file, field and what is wrong."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if field:
                where += f": {field}"
            where += ": "
        elif field:
            where = f"{field}: "
        super().__init__(f"{where}{message}")
