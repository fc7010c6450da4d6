"""What every benchmark gets: the mode, the work folder, the storages, and how to report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import StorageFactory, load_average, say


@dataclass
class Context:
    quick: bool
    workdir: Path
    factory: StorageFactory
    storages: list[str]  # storage kinds to measure on ("sqlite", "postgresql")
    pg_missing: str | None = None  # why PostgreSQL is not measured, if it is not
    jobs: int = 2  # trainings run side by side (each with cores // jobs threads)
    repeats: int | None = None  # overrides each benchmark's default
    seeds: list[int] | None = None  # overrides the training benchmarks' seeds
    shared: dict[str, Any] = field(default_factory=dict)  # results one benchmark lends another

    def reps(self, full: int, quick: int = 1) -> int:
        if self.repeats is not None:
            return self.repeats
        return quick if self.quick else full


@dataclass
class Section:
    """One benchmark's results: tables for results.md, targets, raw numbers for results.json."""

    name: str
    title: str
    setup: list[str] = field(default_factory=list)  # how it was measured (bullets)
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"title", "columns", "rows"}
    targets: list[dict[str, Any]] = field(default_factory=list)  # {"target", "measured", "met"}
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # image files next to results.md
    started: str = ""
    seconds: float = 0.0
    load_before: list[float] | None = None
    load_after: list[float] | None = None
    error: str | None = None

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": [[str(c) for c in r] for r in rows]})

    def target(self, target: str, measured: str, met: bool | None, note: str = "") -> None:
        self.targets.append({"target": target, "measured": measured, "met": met, "note": note})

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def begin(name: str, title: str) -> tuple[Section, float]:
    say(f"== {title}")
    s = Section(name=name, title=title, started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                load_before=load_average())
    return s, time.perf_counter()


def end(section: Section, t0: float) -> Section:
    section.seconds = round(time.perf_counter() - t0, 1)
    section.load_after = load_average()
    say(f"== {section.title}: {section.seconds:.0f} s")
    return section
