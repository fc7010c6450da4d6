"""The ``hpo`` command line: subcommands in :mod:`hpo.cli.data`, :mod:`hpo.cli.study` and
:mod:`hpo.cli.final`, wired together in :mod:`hpo.cli.app`. Each command parses its options, calls
the library (:mod:`hpo.api` and the stage packages) and prints."""

from __future__ import annotations

from hpo.cli.app import app, main

__all__ = ["app", "main"]
