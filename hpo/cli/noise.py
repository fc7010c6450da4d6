"""``hpo noise``: measure a study's seed-to-seed noise before searching (see :mod:`hpo.search.noise`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.console import Console
from rich.table import Table

from hpo.cli.console import make_console
from hpo.cli.options import JsonOpt, RunsDirOpt
from hpo.search.noise import DEFAULT_SEEDS, MIN_SEEDS, NoiseReport, SeedRun


def noise(
    study: Annotated[str, typer.Option("--study", help="study name (looked up in ./studies/) or a study YAML path")],
    seeds: Annotated[int, typer.Option(help="training seeds 0..N-1 (seed=), one training of the base hyps each",
                                       min=MIN_SEEDS)] = DEFAULT_SEEDS,
    device: Annotated[Optional[str], typer.Option(help="'cpu' or a CUDA index (default: 0 if CUDA, else cpu)")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    force: Annotated[bool, typer.Option("--force", help="retrain seeds an earlier run already trained with the "
                                        "same settings")] = False,
    studies_dir: Annotated[Path, typer.Option(help="where study names are looked up")] = Path("studies"),
    as_json: JsonOpt = False,
) -> None:
    """Measure how far the objective moves when only the training seed changes: the base hyps, N seeds.

    Run it once per problem, before searching, and paste the `noise:` block it prints into the study
    file: `hpo status` then says whether the best trial's gain over the base hyps is real (a few times
    the noise) or seed luck, and the base/incumbent pruners take their margins from it. Trainings are
    kept in runs/<study>/noise/: a rerun with more --seeds trains only the new ones.
    """
    from hpo import api
    from hpo.offline import configure_offline
    from hpo.search.noise import NoiseMeter
    from hpo.spec import find_spec_file, load_spec

    spec_path = find_spec_file(study, studies_dir)
    spec = load_spec(spec_path)
    api.check_study_files(spec, str(spec_path))
    api.check_writable(runs_dir, None)
    configure_offline()
    if device is None:
        import torch

        device = "0" if torch.cuda.is_available() else "cpu"
    console = make_console(stderr=True, quiet=as_json)
    console.print(f"measuring the noise of [bold]{spec.name}[/]: base hyps, training seeds 0-{seeds - 1}, "
                  f"{spec.epochs} epochs each, device {device}", soft_wrap=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
                  disable=as_json) as bar:
        meter = NoiseMeter(spec, runs_dir=runs_dir, device=device, force=force, progress=bar)
        report = meter.measure(range(seeds), on_run=lambda run: _print_seed(console, run))
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, spec_path)
    if report.noise_block() is None:
        raise typer.Exit(1)


def _print_seed(console: Console, run: SeedRun) -> None:
    if run.error:
        console.print(f"seed {run.seed}: [red]failed[/]: {run.error}", soft_wrap=True)
    else:
        console.print(f"seed {run.seed}: {run.value:.4f}" + (" (kept from an earlier run)" if run.reused else ""))


def print_report(report: NoiseReport, spec_path: Path) -> None:
    console = make_console()
    table = Table(title=f"{report.study}: base hyps, one training per seed ({report.metric}, best epoch)")
    for col in ("seed", report.metric, "best epoch", "train s", ""):
        table.add_column(col)
    pick = max if report.direction == "maximize" else min
    for r in report.runs:
        if r.error:
            table.add_row(str(r.seed), "-", "-", "-", f"[red]failed:[/] {r.error}")
            continue
        best_epoch = r.values.index(pick(r.values)) + 1 if r.values else "-"
        table.add_row(str(r.seed), f"{r.value:.4f}", str(best_epoch), f"{r.train_seconds:.0f}",
                      "kept from an earlier run" if r.reused else "")
    console.print(table)
    block = report.noise_block()
    if block is None:
        console.print(f"[red]no usable noise figure:[/] {len(report.good_runs)} seed(s) trained, their std is "
                      f"{report.std:.4g}" + (" (identical values: does the training depend on seed=?)"
                                             if report.std == 0 else ""), soft_wrap=True)
        return
    console.print(f"{report.metric} over {len(report.good_runs)} seeds: mean {report.mean:.4f}, std "
                  f"{report.std:.4f}; a search's gain over the base hyps is real at a few times that.",
                  soft_wrap=True)
    if "per_epoch" not in block and report.per_epoch:
        console.print("per_epoch left out: some epoch's best-so-far value did not move between seeds (std 0)")
    console.print(f"add this to {spec_path} (replacing any noise: block):")
    text = yaml.safe_dump({"noise": block}, sort_keys=False, default_flow_style=None, width=1000)
    console.print(text.rstrip(), markup=False, highlight=False, soft_wrap=True)
