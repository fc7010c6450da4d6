"""User-facing errors.

Every fault in user input (a study file, a data folder, a storage URL) is raised as an
:class:`HpoError` where it is detected. The CLI turns it into one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Longest repr of a user's value an error message quotes, and longest message at all: an error
#: line must stay a line even when the input was a megabyte string or an expanded alias bomb.
MAX_SHOWN = 80
MAX_MESSAGE = 1000


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user input in an error line.

    Containers are cut while they are rendered, so even a huge (or shared-reference) structure
    costs no more than ``limit`` characters of work.
    """
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    short.maxlevel = 3
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        message = " ".join(str(message).splitlines())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(f"{where}{message}")
