"""``hpo data synth|prepare|check``: build and check YOLO datasets.

Quiet by default: a short summary on stdout, a progress bar on stderr only when it is a terminal,
``--json`` for machine-readable output. Faults in the input are :class:`~hpo.errors.HpoError`
(one line, exit status 2), raised by the functions these commands call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from hpo.errors import HpoError

app = typer.Typer(help="Build and check YOLO datasets: synthetic AI Hub twin, AI Hub raw data -> "
                  "stratified YOLO sets, dataset checks.", no_args_is_help=True)


def _print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _interactive() -> bool:
    return sys.stderr.isatty()


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HpoError(f"expected comma-separated fold numbers like 0,1, got {text!r}",
                       field=option) from None


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output folder for the raw data (created)."),
    cows: Optional[int] = typer.Option(None, help="Cow images [default: 12152 as the real set, or "
                                       "the real 3:1 ratio to --pigs]."),
    pigs: Optional[int] = typer.Option(None, help="Pig images [default: 4303 as the real set, or "
                                       "the real ratio to --cows]."),
    scale: float = typer.Option(1.0, help="Image size factor: 1 = real sizes (1920x1080, "
                                "1280x960); 0.1 = 192x108 / 128x96."),
    seed: int = typer.Option(0, help="Random seed: same seed, same bytes."),
    corrupt: int = typer.Option(0, help="Damage this many files on purpose (truncated jpgs, invalid "
                                "JSON, JSON missing a field)."),
    zip_: bool = typer.Option(False, "--zip", help="Write the four zips with their Korean names "
                              "instead of the extracted folders."),
    style: str = typer.Option("farm", help="Look: 'farm' (pens, Holsteins, pink pigs; the default), "
                              "'pasture' (grass, solid-coat cows, spotted pigs, smaller animals) or "
                              "'night' (the farm scene as a grey infrared CCTV frame)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a synthetic twin of the AI Hub livestock raw data (layout, names, JSON, statistics)."""
    from hpo.data import aihub
    from hpo.data.synth import generate

    real_cows, real_pigs = aihub.REAL_COUNTS["cow"], aihub.REAL_COUNTS["pig"]
    if cows is None and pigs is None:
        cows, pigs = real_cows, real_pigs
    elif pigs is None:  # one count given: the other keeps the real cow : pig ratio
        pigs = round(cows * real_pigs / real_cows)
    elif cows is None:
        cows = round(pigs * real_cows / real_pigs)
    summary = generate(out, cows=cows, pigs=pigs, scale=scale, seed=seed,
                       corrupt=corrupt, zip=zip_, progress=_interactive() and not as_json,
                       style=style)
    if as_json:
        _print_json(summary.to_dict())
        return
    what = "zips" if zip_ else "folders"
    extra = f", {len(summary.corrupt)} corrupt files" if summary.corrupt else ""
    print(f"wrote {summary.images['cow']} cow + {summary.images['pig']} pig images "
          f"({summary.boxes['cow']} + {summary.boxes['pig']} boxes, {summary.empty_images} without "
          f"a box{extra}) as AI Hub {what} in {summary.out} ({summary.seconds:.1f} s)")


@app.command()
def prepare(
    raw: Path = typer.Argument(..., help="AI Hub raw data: the four zips, their extracted folders, "
                               "or a folder of jpg/json pairs."),
    out: Path = typer.Argument(..., help="Output dataset folder (its earlier prepare output is "
                               "replaced; other files are left alone)."),
    folds: int = typer.Option(5, help="Number of stratified folds."),
    valid_fold: int = typer.Option(4, help="Fold index used for validation."),
    seed: int = typer.Option(42, help="Seed of the stratified K-fold shuffle."),
    mini_folds: Optional[str] = typer.Option(None, help="Folds of the mini training set, e.g. 0,1 "
                                             "[default: the first two non-validation folds]."),
    stratify_extra: str = typer.Option("", help="Also stratify on box aspect ratio and/or size: "
                                       "'ratio', 'size' or 'ratio,size'."),
    strict: bool = typer.Option(False, help="Fail (exit 2) on any bad file, clipped or dropped "
                                "box instead of reporting it."),
    as_json: bool = typer.Option(False, "--json", help="Print the split report as JSON."),
) -> None:
    """Convert AI Hub raw data to YOLO labels, split it, write train/mini/full yamls and a report."""
    from hpo.data.prepare import prepare as run

    mini = _int_list(mini_folds, "--mini-folds") if mini_folds is not None else None
    extra = [x.strip() for x in stratify_extra.split(",") if x.strip()]
    report = run(raw, out, folds=folds, valid_fold=valid_fold, seed=seed, mini_folds=mini,
                 stratify_extra=extra, strict=strict, progress=_interactive() and not as_json)
    if as_json:
        _print_json(report.to_dict() | {"seconds": report.seconds})
        return
    from rich.table import Table

    from hpo.cli.console import make_console

    print(f"{report.out} ({report.seconds:.1f} s)")  # paths are printed whole: rich would wrap them
    table = Table()
    header, *rows = report.table()
    for col in header:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console = make_console()
    console.print(table)
    print(f"skipped {len(report.skipped)} file(s), clipped {report.clipped['boxes']} box(es), "
          f"dropped {report.dropped['boxes']} zero-area box(es), ignored "
          f"{len(report.duplicates)} duplicate(s): see {report.out / 'split_report.md'}")
    for name in ("train", "mini", "full"):
        print(f"{name}: {report.out / (name + '.yaml')}")


@app.command()
def check(
    data_yaml: Path = typer.Argument(..., help="A YOLO data yaml (train, val, names)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Validate a YOLO data yaml (paths, label files, class ids) and print counts per split."""
    from hpo.data.check import check_dataset

    summary = check_dataset(data_yaml)
    if as_json:
        _print_json(summary.to_dict())
        return
    from rich.table import Table

    from hpo.cli.console import make_console

    print(f"{summary.yaml}: OK, {summary.nc} classes")  # whole, never wrapped
    table = Table()
    for col in ["split", "images", "labelled", "backgrounds"]:
        table.add_column(col, justify="right")
    for name in summary.names:
        table.add_column(f"{name} boxes (images)", justify="right")
    for key, s in summary.splits.items():
        table.add_row(key, str(s.images), str(s.labelled), str(s.backgrounds),
                      *(f"{b} ({i})" for b, i in zip(s.boxes, s.images_per_class)))
    make_console().print(table)
    err = make_console(stderr=True)
    for w in summary.warnings:
        err.print(f"warning: {w}", style="yellow", highlight=False)
