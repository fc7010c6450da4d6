"""Options shared by several ``hpo`` commands, and the choices typer validates.

Choices are built from the registries (samplers, pruners, export formats), so a new sampler shows up
in ``--help`` and is accepted without touching the CLI.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hpo.final.export import FORMATS
from hpo.search.pruners import PRUNERS
from hpo.search.samplers import SAMPLERS

SamplerName = Enum("SamplerName", {name: name for name in SAMPLERS}, type=str)  # type: ignore[misc]
PrunerName = Enum("PrunerName", {name: name for name in PRUNERS}, type=str)  # type: ignore[misc]
ExportFormat = Enum("ExportFormat", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]

StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="SQLAlchemy URL (postgresql+psycopg://... across machines) or an SQLite path; "
    "default $HPO_STORAGE, else storage/hpo.db", show_default=False)]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="root of the trial directories")]
# Crash safety, shared by `launch` (passed on to its workers) and `worker`.
HeartbeatOpt = Annotated[int, typer.Option(help="seconds between heartbeats of a running trial", min=1)]
GraceOpt = Annotated[int, typer.Option(
    help="seconds without heartbeat before a trial counts as dead and is retried", min=1)]
MaxRetryOpt = Annotated[int, typer.Option(help="retries of a trial whose worker died or was stopped", min=0)]
MaxFailuresOpt = Annotated[int, typer.Option(
    help="stop a worker after this many failed trials in a row (full disk, broken GPU; 0: never)", min=0)]
MaxInfeasibleOpt = Annotated[int, typer.Option(
    help="stop the workers once the study holds this many trials refused before training (a cost constraint "
    "broken) per budgeted trial; refused trials do not count against --trials (0: no cap)", min=0)]
KeepOpt = Annotated[int, typer.Option("--keep", help="top trials that keep their weights (0: keep all)")]
ArtifactsOpt = Annotated[Optional[str], typer.Option(
    "--artifacts", help="artifact folder the dashboard serves (default $HPO_ARTIFACTS, else artifacts/ next to "
    "an SQLite storage, else storage/artifacts; 'off' disables uploads)", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
# Hidden: the learning-curve stand-in for training, for tests and benchmarks of the machinery.
TrainerOpt = Annotated[str, typer.Option(hidden=True, help="yolo | curve")]
CurveSecondsOpt = Annotated[float, typer.Option(hidden=True)]


def choice(value: Enum | str | None) -> str | None:
    """The plain name behind an Enum option (typer hands Enum members to the command)."""
    return value.value if isinstance(value, Enum) else value
