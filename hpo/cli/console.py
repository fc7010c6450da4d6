"""The rich consoles of the commands: full width when the output is not a terminal.

Rich draws for an 80-column terminal whenever it cannot ask one, so ``hpo status | cat``, Slurm and CI
logs got ``sampl…`` headers, cut values and commands broken across lines. Piped or redirected,
nothing is cut or wrapped: the reader of a log file (or a script) gets every value whole.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

#: Width of piped output: wide enough that no table column is squeezed or line wrapped.
PIPE_WIDTH = 10_000
#: Width of ``--help`` when piped: option names and types whole (help panels fill the width).
PIPE_HELP_WIDTH = 160


def _sized_by_user() -> bool:
    return bool(os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH"))


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console for ``stdout`` (or ``stderr``); wide and never wrapping unless it is a terminal."""
    out = Console(stderr=stderr, quiet=quiet)
    if not out.is_terminal and not _sized_by_user():
        out = Console(stderr=stderr, quiet=quiet, width=PIPE_WIDTH, soft_wrap=True)
    return out


def widen_help_when_piped() -> None:
    """``hpo launch --help | less`` (or into a file) shows full option names, as in a wide terminal."""
    import typer.rich_utils

    if not sys.stdout.isatty() and not _sized_by_user() and typer.rich_utils.MAX_WIDTH is None:
        typer.rich_utils.MAX_WIDTH = PIPE_HELP_WIDTH
