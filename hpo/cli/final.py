"""After the search: ``export``, ``retrain``, ``report`` and ``dashboard``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from hpo import api
from hpo.cli.console import make_console
from hpo.cli.options import ArtifactsOpt, ExportFormat, RunsDirOpt, StorageOpt, choice
from hpo.errors import HpoError


def export(
    study: Annotated[str, typer.Option("--study", help="study name in the storage")],
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write ('-' for stdout)")] = Path("hyp.yaml"),
    trial: Annotated[Optional[int], typer.Option("--trial", help="export this trial instead of the best")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="ultralytics: a config for `yolo train cfg=FILE`; "
                                              "yolov5: a YOLOv5 hyp.yaml for `train.py --hyp FILE`")] = "ultralytics",  # type: ignore[assignment]
    final: Annotated[bool, typer.Option("--final", help="export the winner of `hpo retrain` (full-set settings)")] = False,
    by: Annotated[Optional[str], typer.Option("--by", help="choose the winner by this metric (e.g. map75, "
                                              "latency_ms; default: the primary objective), feasible trials only")] = None,
    storage: StorageOpt = None,
) -> None:
    """Write the winning trial's full training config as a YAML that `yolo train cfg=FILE` accepts.

    The winner: the best feasible trial by --by (default: the primary objective); the file's header
    says which rule chose it.
    """
    name = choice(fmt) or "ultralytics"
    text, what = api.export(study, output, trial=trial, fmt=name, final=final, storage=storage, by=by)
    if str(output) == "-":
        sys.stdout.write(text)
        return
    use = f"python train.py --hyp {output} (YOLOv5)" if name == "yolov5" else f"yolo train cfg={output}"
    make_console(stderr=True).print(f"wrote {output} ({what}); train with: {use}", soft_wrap=True)


def retrain(
    study: Annotated[str, typer.Option("--study", help="study name in the storage")],
    storage: StorageOpt = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="retrain the best K trials (default: the "
                                                 "study's retrain.top_k, else 1)", min=1)] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="data yaml of the full set (default: the study's "
                                                "retrain.data, else its data)")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="default: the study's retrain.epochs",
                                                  min=1)] = None,
    device: Annotated[Optional[str], typer.Option(help="'cpu' or a CUDA index (default: 0 if CUDA, else cpu)")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    artifacts: ArtifactsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="retrain models an earlier run already made with "
                                        "the same settings")] = False,
    front: Annotated[bool, typer.Option("--front", help="retrain every trial of the Pareto front "
                                        "(multi-objective studies)")] = False,
    by: Annotated[Optional[str], typer.Option("--by", help="rank the top K and pick the winner by this metric "
                                              "(e.g. map75, latency_ms; default: the primary objective), feasible "
                                              "models only; with --front: the winner among the front")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the final record as JSON")] = False,
) -> None:
    """Retrain the best trials' hyps on the full set, validate on the real validation set, pick the winner.

    With --top-k 3 or more it also says how well the mini-set ranking predicted the full-set one
    (Spearman). Results: `hpo status --study NAME`, `hpo export --final`, runs/<study>/final/.
    """
    from hpo.data.check import check_dataset
    from hpo.final.retrain import Retrainer, RetrainPlan
    from hpo.offline import configure_offline

    configure_offline()
    loaded = api.load(study, storage)
    api.check_writable(runs_dir, None)
    settings = loaded.settings
    plan = RetrainPlan.from_spec(settings.spec, top_k=top_k, data=data, epochs=epochs, front=front, by=by)
    settings.spec.model_copy(update={"data": str(plan.data)}).check_files(f"study {study!r} (retrain)")
    dataset = check_dataset(plan.data)
    console = make_console(stderr=True)
    for warning in dataset.warnings:
        console.print(f"[yellow]warning:[/] {plan.data}: {warning}")
    if device is None:
        import torch

        device = "0" if torch.cuda.is_available() else "cpu"
    from hpo.final.record import WinnerRule

    which = "the Pareto front" if plan.front else f"the top {plan.top_k} trial(s)" + (f" by {plan.by}" if plan.by else "")
    which += f"; the winner: {WinnerRule.of(settings.spec, plan.by).describe()} on the full set"
    console.print(f"retraining {which} of [bold]{study}[/]: {plan.epochs} epochs on "
                  f"{plan.data} ({dataset.splits['train'].images} train / {dataset.splits['val'].images} "
                  f"validation images), device {device}")
    record = Retrainer(loaded.study, settings, plan, runs_dir=runs_dir, device=device, console=console,
                       force=force, artifact_dir=api.artifact_dir(artifacts, loaded.storage_url)).run()
    if as_json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print_final(make_console(), record)
        console.print(f"next: hpo export --study {study} --final   (files in {record['dir']})", soft_wrap=True)
    if record["winner"] is None:
        if any(m.get("full_value") is not None and not m.get("error") for m in record["models"]):
            raise HpoError(f"no retrained model is eligible: {record['chosen_by']['rule']} found none that is "
                           "feasible and has the metric (see the table above)", field="--by")
        raise HpoError("no retrained model succeeded (reasons above)")


def print_final(console: Console, record: dict[str, Any]) -> None:
    """The final models as a table, then the verdict (winner, mini-vs-full agreement)."""
    from hpo.final.record import summary_lines

    table = Table(title=f"final models: {record['epochs']} epochs on {record['data']}")
    for col in ("trial", "mini", "full", "rank mini>full", "mAP50", "mAP75", "mAP50-95", "MB", "<=100MB", "time",
                "note"):
        table.add_column(col)
    for m in record["models"]:
        mt = m.get("metrics") or {}
        table.add_row(str(m["trial"]), _f(m["mini_value"]), _f(m.get("full_value")),
                      f"{m['mini_rank']}>{m.get('full_rank') or '-'}",
                      *(_f(mt.get(k)) for k in ("map50", "map75", "map50-95")),
                      f"{m['weight_bytes'] / 1e6:.1f}" if m.get("weight_bytes") else "-",
                      {True: "yes", False: "NO", None: "-"}[m.get("under_limit")],
                      f"{m.get('wall_seconds') or 0:.0f} s",
                      m.get("error") or ("reused" if m.get("reused") else ""))
    console.print(table)
    for line in summary_lines(record):
        console.print(line)


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="interface to bind; anything but loopback exposes an "
                                      "unauthenticated dashboard")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)", min=0, max=65535)] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """optuna-dashboard on the study storage, with the trials' artifacts (hyp.yaml, results.csv, weights)."""
    from hpo.final.dashboard import NO_AUTH_WARNING, create_server, is_loopback
    from hpo.storage import mask_url

    rdb, url = api.open_storage(storage)
    artifact_dir = api.artifact_dir(artifacts, url)
    console = make_console(stderr=True)
    if not is_loopback(host):
        console.print(f"[bold red]warning:[/] {NO_AUTH_WARNING.format(host=host, port=port)}")
    server = create_server(rdb, host=host, port=port, artifact_dir=artifact_dir)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"optuna-dashboard on http://{shown}:{server.server_port}/ for {mask_url(url)} "
                  f"(artifacts: {artifact_dir or 'off'}); Ctrl-C to stop", soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def report(
    study: Annotated[str, typer.Option("--study", help="study name in the storage")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="report folder (default: "
                                                   "runs/<study>/report)", show_default=False)] = None,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="list the written files as JSON")] = False,
) -> None:
    """A static report: history, importances, intermediate values, parallel coordinates, mini vs full, trials."""
    from hpo.final.report import ReportWriter, report_json

    from hpo.paths import check_writable_dir

    loaded = api.load(study, storage)
    out = output or Path("runs") / study / "report"
    check_writable_dir(out, "--output")
    written = ReportWriter(loaded.study, loaded.settings, out).write()
    if as_json:
        print(json.dumps(report_json(written), indent=2))
        return
    console = make_console(stderr=True)
    for name, why in written.skipped.items():
        console.print(f"[yellow]not drawn:[/] {name}: {why}")
    for name, caveat in written.caveats.items():
        console.print(f"[yellow]caveat:[/] {name}: {caveat}")
    console.print(f"wrote {len(written.files)} files; open {written.index}")
